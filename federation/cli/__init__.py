"""The ``meshfed`` command line (click). Commands are thin: parse, call a library function,
print the result as text or ``-o json``."""
