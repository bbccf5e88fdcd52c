"""Load-balancing decisions: pure functions from localities, health and capacity to EDS
priorities and locality weights."""
