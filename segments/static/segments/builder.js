// The segment builder: the definition (one JSON node of the rule language) edited as nested conditions, with the
// JSON beside it (either side may be edited) and the live count of an unsaved preview.
(function () {
  "use strict";
  const root = document.getElementById("builder-tree");
  if (!root) return;
  const textarea = document.getElementById("definition");
  const countBox = document.getElementById("live-count");
  const errorBox = document.getElementById("definition-error");
  const vocabulary = JSON.parse(document.getElementById("vocabulary").textContent);
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
  const VALUE_OPS = ["eq", "neq", "contains", "starts_with", "in", "not_in", "gt", "gte", "lt", "lte", "between",
    "exists", "not_exists", "older_than", "newer_than"];
  const COUNT_OPS = ["gte", "gt", "eq", "neq", "lte", "lt", "between"];
  const KINDS = {trait: "Trait", computed: "Computed trait", event: "Event", consent: "Consent",
    segment: "In segment", identifier: "Has identifier"};
  let definition = JSON.parse(textarea.value || "{}");
  let serverError = JSON.parse(document.getElementById("server-error").textContent);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) if (child !== null && child !== undefined)
      node.append(child instanceof Node ? child : document.createTextNode(child));
    return node;
  }
  function select(options, value, onchange, label) {
    const s = el("select", {"aria-label": label, onchange: (e) => onchange(e.target.value)});
    for (const opt of options) {
      const [v, text] = Array.isArray(opt) ? opt : [opt, opt];
      s.append(el("option", {value: v, selected: v === value}, text));
    }
    return s;
  }
  function input(value, onchange, label, list, placeholder) {
    return el("input", {value: value === undefined ? "" : value, "aria-label": label, list, placeholder,
      onchange: (e) => onchange(e.target.value)});
  }
  function typed(text) {
    const t = String(text).trim();
    if (t === "true" || t === "false") return t === "true";
    if (t !== "" && !isNaN(Number(t))) return Number(t);
    return text;
  }
  function shown(value) {
    return Array.isArray(value) ? value.join(", ") : value === undefined ? "" : String(value);
  }

  function kindOf(node) {
    if (!node || typeof node !== "object") return "trait";
    for (const k of ["all", "any", "not", "trait", "computed", "event", "consent", "segment", "identifier"])
      if (k in node) return k;
    return "trait";
  }
  function fresh(kind) {
    switch (kind) {
      case "trait": return {trait: vocabulary.traits[0] || "plan", op: "eq", value: ""};
      case "computed": return {computed: vocabulary.computed[0] || "monetary_value", op: "gt", value: 0};
      case "event": return {event: vocabulary.events[0] || "Product Viewed", within: "7d"};
      case "consent": return {consent: vocabulary.purposes[0] || "marketing_email", is: "granted"};
      case "segment": return {segment: vocabulary.segments[0] || ""};
      case "identifier": return {identifier: "email"};
      default: return {all: [fresh("trait")]};
    }
  }

  function changed() {
    textarea.value = JSON.stringify(definition, null, 2);
    render();
    schedulePreview();
  }

  // A comparison: op, then the value it needs (none, a list, two bounds, a duration or one value).
  function comparison(holder, ops, label) {
    const parts = [select(ops, holder.op, (op) => {
      holder.op = op;
      if (op === "exists" || op === "not_exists") delete holder.value;
      else if (op === "between") holder.value = [0, 0];
      else if (op === "in" || op === "not_in") holder.value = Array.isArray(holder.value) ? holder.value : [];
      else if (op === "older_than" || op === "newer_than") holder.value = "30d";
      else if (Array.isArray(holder.value)) holder.value = holder.value[0] ?? "";
      changed();
    }, label + " operator")];
    if (holder.op === "between") {
      const bounds = Array.isArray(holder.value) ? holder.value : [0, 0];
      parts.push(input(bounds[0], (v) => { holder.value = [typed(v), bounds[1]]; changed(); }, label + " low"),
        "and", input(bounds[1], (v) => { holder.value = [bounds[0], typed(v)]; changed(); }, label + " high"));
    } else if (holder.op === "in" || holder.op === "not_in") {
      parts.push(input(shown(holder.value), (v) => {
        holder.value = v.split(",").map((x) => typed(x.trim())).filter((x) => x !== ""); changed();
      }, label + " values", null, "a, b, c"));
    } else if (holder.op !== "exists" && holder.op !== "not_exists") {
      const duration = holder.op === "older_than" || holder.op === "newer_than";
      parts.push(input(shown(holder.value), (v) => { holder.value = duration ? v.trim() : typed(v); changed(); },
        label + " value", null, duration ? "30d" : "value"));
    }
    return parts;
  }

  function leafRow(node, kind) {
    const row = el("div", {class: "row"});
    if (kind === "trait" || kind === "computed") {
      row.append(input(node[kind], (v) => { node[kind] = v.trim(); changed(); }, KINDS[kind] + " name",
        kind === "trait" ? "known-traits" : "known-computed"), ...comparison(node, VALUE_OPS, KINDS[kind]));
    } else if (kind === "consent") {
      row.append(select(vocabulary.purposes, node.consent, (v) => { node.consent = v; changed(); }, "Purpose"),
        "is", select(["granted", "denied"], node.is, (v) => { node.is = v; changed(); }, "Consent state"));
    } else if (kind === "segment") {
      row.append(select(vocabulary.segments, node.segment, (v) => { node.segment = v; changed(); }, "Segment"));
    } else if (kind === "identifier") {
      row.append(select(vocabulary.identifiers, node.identifier, (v) => { node.identifier = v; changed(); },
        "Identifier type"));
    }
    return row;
  }

  function eventEditor(node, path) {
    const box = el("div", {});
    const measure = ["count", "sum", "avg", "first", "last"].find((m) => m in node) || "count";
    box.append(el("div", {class: "row"},
      input(node.event, (v) => { node.event = v.trim(); changed(); }, "Event name", "known-events"),
      "within", input(node.within || "", (v) => { if (v.trim()) node.within = v.trim(); else delete node.within;
        changed(); }, "Within", null, "all time"),
      select([["count", "count"], ["sum", "sum of"], ["avg", "average of"], ["first", "first time"],
        ["last", "last time"]], measure, (m) => {
        for (const k of ["count", "sum", "avg", "first", "last"]) delete node[k];
        if (m === "count") node.count = {op: "gte", value: 1};
        else if (m === "sum" || m === "avg") node[m] = {property: "revenue", op: "gt", value: 0};
        else node[m] = {op: "newer_than", value: "7d"};
        changed();
      }, "Measure")));
    const m = node[measure] || {op: "gte", value: 1};
    const measureRow = el("div", {class: "row"});
    if (measure === "sum" || measure === "avg") measureRow.append(input(m.property, (v) => {
      m.property = v.trim(); changed(); }, "Property"));
    if (!(measure in node) && measure === "count") measureRow.append(el("span", {class: "muted"}, "at least once"));
    else measureRow.append(...comparison(m, measure === "first" || measure === "last" ? ["older_than", "newer_than"]
      : COUNT_OPS, "Measure"));
    if (measure === "count" && !("count" in node)) measureRow.append(el("button", {type: "button",
      onclick: () => { node.count = {op: "gte", value: 1}; changed(); }}, "set a count"));
    box.append(measureRow);
    (node.where || []).forEach((condition, i) => {
      box.append(el("div", {class: "row", "data-path": `${path}.where[${i}]`}, "where",
        input(condition.property, (v) => { condition.property = v.trim(); changed(); }, "Property"),
        ...comparison(condition, VALUE_OPS, "Property"),
        el("button", {type: "button", onclick: () => { node.where.splice(i, 1);
          if (!node.where.length) delete node.where; changed(); }}, "remove")));
    });
    const sequence = "followed_by" in node ? "followed_by" : "not_followed_by" in node ? "not_followed_by" : "";
    const tools = el("div", {class: "tools"},
      el("button", {type: "button", onclick: () => { (node.where = node.where || []).push(
        {property: "category", op: "eq", value: ""}); changed(); }}, "+ where"),
      select([["", "no sequence"], ["followed_by", "followed by"], ["not_followed_by", "not followed by"]],
        sequence, (v) => {
          const inner = node.followed_by || node.not_followed_by || {event: "Order Completed", within: "2h"};
          delete node.followed_by; delete node.not_followed_by;
          if (v) node[v] = inner;
          changed();
        }, "Sequence"));
    box.append(tools);
    if (sequence) {
      const inner = node[sequence];
      box.append(el("div", {class: "row", "data-path": `${path}.${sequence}`},
        sequence === "followed_by" ? "followed by" : "not followed by",
        input(inner.event, (v) => { inner.event = v.trim(); changed(); }, "Next event", "known-events"),
        "within", input(inner.within, (v) => { inner.within = v.trim(); changed(); }, "Next event within")));
    }
    return box;
  }

  // One node at `path`; `replace(newNode)` puts another in its place, `remove` (absent at the root) deletes it,
  // `unwrap` (for a node inside a "not") takes the negation away.
  function nodeView(node, path, replace, remove, unwrap) {
    const kind = kindOf(node);
    if (kind === "not") {
      return nodeView(node.not, `${path}.not`, (n) => { node.not = n; }, remove, () => replace(node.not));
    }
    const box = el("div", {class: "node" + (kind === "all" || kind === "any" ? " group" : "") +
      (unwrap ? " negated" : ""), "data-path": path});
    const head = el("div", {class: "row"},
      el("label", {class: "inline"}, el("input", {type: "checkbox", class: "negate", "aria-label": "Not",
        checked: !!unwrap, onchange: () => { if (unwrap) unwrap(); else replace({not: node}); changed(); }}),
        " not"));
    if (kind === "all" || kind === "any") {
      head.append(select([["all", "all of"], ["any", "any of"]], kind, (v) => {
        const children = node[kind]; delete node[kind]; node[v] = children; changed();
      }, "Group"));
    } else {
      head.append(select(Object.entries(KINDS), kind, (v) => { replace(fresh(v)); changed(); }, "Condition"));
    }
    if (remove) head.append(el("button", {type: "button", class: "remove", onclick: () => { remove(); changed(); }},
      "remove"));
    box.append(head);
    if (kind === "all" || kind === "any") {
      const children = el("div", {class: "children"});
      node[kind].forEach((child, i) => children.append(nodeView(child, `${path}.${kind}[${i}]`,
        (n) => { node[kind][i] = n; }, () => { node[kind].splice(i, 1); })));
      box.append(children, el("div", {class: "tools"},
        el("button", {type: "button", class: "add-condition", onclick: () => { node[kind].push(fresh("trait"));
          changed(); }}, "+ condition"),
        el("button", {type: "button", class: "add-group", onclick: () => { node[kind].push(
          {any: [fresh("trait")]}); changed(); }}, "+ group")));
    } else if (kind === "event") {
      box.append(eventEditor(node, path));
    } else {
      box.append(leafRow(node, kind));
    }
    return box;
  }

  function render() {
    root.replaceChildren(nodeView(definition, "definition", (n) => { definition = n; }, null));
    showError(serverError);
  }

  // The error's field is a JSON path; it is shown on the deepest node whose path starts it.
  function showError(error) {
    errorBox.textContent = error ? `${error.field}: ${error.message}` : "";
    root.querySelectorAll(".invalid").forEach((n) => n.classList.remove("invalid"));
    root.querySelectorAll(".node > .error").forEach((n) => n.remove());
    if (!error || !error.field) return;
    let best = null;
    root.querySelectorAll("[data-path]").forEach((n) => {
      const p = n.dataset.path;
      if ((error.field === p || error.field.startsWith(p + ".") || error.field.startsWith(p + "["))
          && (!best || p.length > best.dataset.path.length)) best = n;
    });
    if (best) {
      const box = best.classList.contains("node") ? best : best.closest(".node");
      box.classList.add("invalid");
      box.append(el("div", {class: "error", role: "alert"}, error.message));
    }
  }

  let timer = null;
  function schedulePreview() {
    clearTimeout(timer);
    timer = setTimeout(preview, 350);
  }
  async function preview() {
    countBox.textContent = "…";
    const response = await fetch(document.getElementById("builder").dataset.previewUrl, {
      method: "POST", headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify({definition}), credentials: "same-origin"});
    const body = await response.json();
    if (response.ok) {
      serverError = null;
      countBox.textContent = body.estimated
        ? "≈ " + body.count.toLocaleString() + " ± " + body.margin.toLocaleString()
        : body.count.toLocaleString();
      countBox.title = body.estimated ? "estimated from a random sample of profiles" : "";
      showError(null);
    } else {
      serverError = body;
      countBox.textContent = "—";
      showError(body);
    }
  }

  textarea.addEventListener("input", () => {
    try {
      definition = JSON.parse(textarea.value);
      render();
      schedulePreview();
    } catch (e) {
      showError({field: "definition", message: "the JSON is not valid: " + e.message});
    }
  });
  render();
  schedulePreview();
})();
