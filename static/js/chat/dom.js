// Small DOM helpers. Model and user text is only ever set with textContent.

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) { node.className = className; }
  if (text !== undefined && text !== null) { node.textContent = text; }
  return node;
}

export function button(className, label, role, title) {
  const b = el("button", className, label);
  b.type = "button";
  if (role) { b.setAttribute("data-role", role); }
  if (title) {
    b.title = title;
    // Icon buttons need a name; text buttons keep their visible text as their name.
    if (label.length <= 2) { b.setAttribute("aria-label", title); }
  }
  return b;
}
