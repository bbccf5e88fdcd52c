// Evaluated in the dashboard by tests/e2e/test_telemetry.py (issue 41): every piece of text
// that runs outside its box, and where the tables end. Returns
// {problems: [...], viewport: [w, h], edgesTop, edgesBottom, pricesBottom, rows}.
(() => {
  const problems = [];
  const inside = (r, box, slack = 0.5) =>
    r.left >= box.left - slack && r.right <= box.right + slack &&
    r.top >= box.top - slack && r.bottom <= box.bottom + slack;
  const name = (n) => `${n.tagName}${n.id ? "#" + n.id : ""} "${(n.textContent || "").trim().slice(0, 60)}"`;
  for (const g of document.querySelectorAll("#topology g.cluster")) {
    const box = g.querySelector("rect").getBoundingClientRect();
    for (const t of g.querySelectorAll("text")) {
      if (!inside(t.getBoundingClientRect(), box)) problems.push(`${name(t)} outside cluster ${g.dataset.cluster}`);
    }
  }
  const svg = document.getElementById("topology").getBoundingClientRect();
  const clusters = [...document.querySelectorAll("#topology g.cluster rect")].map((r) => r.getBoundingClientRect());
  for (const t of document.querySelectorAll("#topology g.edge text")) {
    const r = t.getBoundingClientRect();
    if (!inside(r, svg)) problems.push(`${name(t)} outside the topology`);
    for (const c of clusters) {
      if (r.left < c.right && r.right > c.left && r.top < c.bottom && r.bottom > c.top) problems.push(`${name(t)} over a cluster box`);
    }
  }
  for (const c of document.querySelectorAll("th, td, header span, header h1, li")) {
    if (c.scrollWidth > c.clientWidth + 1) problems.push(`${name(c)} overflows its cell`);
  }
  for (const s of document.querySelectorAll("section, header")) {
    for (const child of s.querySelectorAll("*")) {
      if (!(child instanceof HTMLElement) || child.closest("svg")) continue;
      const r = child.getBoundingClientRect(), box = s.getBoundingClientRect();
      if (r.width && !inside(r, box, 1)) problems.push(`${name(child)} outside its section`);
    }
  }
  if (document.documentElement.scrollWidth > innerWidth) problems.push(`page scrolls sideways (${document.documentElement.scrollWidth} > ${innerWidth})`);
  const box = (id) => document.getElementById(id).getBoundingClientRect();
  return { problems, viewport: [innerWidth, innerHeight], edgesTop: box("edges").top,
           edgesBottom: box("edges").bottom, pricesBottom: box("prices").bottom,
           rows: document.querySelectorAll("#edges tbody tr").length };
})()
