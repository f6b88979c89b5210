// The finance dashboard. Reads /api/v1 with the bearer token kept in sessionStorage.
// Every value from the data is written with textContent, never as HTML.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "reconciler.token";
const STATUSES = ["ESCALATED", "REFUND_PENDING", "FULFILLED", "PARTIALLY_FULFILLED",
  "REFUNDED", "PAID", "EXPIRED_UNPAID", "AWAITING_PAYMENT"];
const BUCKETS = ["<1h", "1-6h", "6-24h", ">24h"];
const FIGURES = ["kept", "refunded", "refund_pending", "at_risk"];
const FIGURE_NAMES = { debited: "Debited", kept: "Kept", refunded: "Refunded",
  refund_pending: "Refund pending", at_risk: "At risk" };
const PLOT_CONFIG = { displaylogo: false, responsive: true };

const $ = (id) => document.getElementById(id);

/** Whole rupiah the Indonesian way: "Rp 1.234.500" (dots group thousands). */
function rupiah(amount) {
  const digits = String(Math.abs(Math.trunc(Number(amount) || 0)));
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ".");
  return (amount < 0 ? "-Rp " : "Rp ") + grouped;
}

/** A count with Indonesian thousands dots. */
function count(n) {
  return String(Math.trunc(Number(n) || 0)).replace(/\B(?=(\d{3})+(?!\d))/g, ".");
}

/** An engine-clock time, shown in UTC without fuss. */
function when(iso) {
  return iso ? String(iso).replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : "—";
}

function age(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min`;
}

/** A new element with text content (never HTML) and optional class. */
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function numCell(text) { return el("td", text, "num"); }

class Unauthorized extends Error {}

async function api(path, params) {
  const url = new URL(API + path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(key, value);
  }
  const response = await fetch(url, {
    headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) },
  });
  if (response.status === 401) throw new Unauthorized("the token is not valid");
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

// -- the pieces of the page ----------------------------------------------------------

function showSummary(summary) {
  for (const figure of document.querySelectorAll("[data-figure]")) {
    const name = figure.dataset.figure;
    const value = summary.totals[name];
    figure.dataset.value = String(value);
    figure.querySelector(".value").textContent = rupiah(value);
  }
  const body = $("statuses").querySelector("tbody");
  body.replaceChildren();
  for (const status of STATUSES) {
    const tr = row([el("td", status), numCell(count(summary.orders_by_status[status] || 0))]);
    tr.dataset.status = status;
    tr.dataset.count = String(summary.orders_by_status[status] || 0);
    tr.className = "clickable";
    tr.title = "List these orders";
    tr.addEventListener("click", () => { $("orders-status").value = status; orders.reset(); });
    body.append(tr);
  }
  $("orders-total").textContent = count(summary.orders);
  $("orders-total").dataset.count = String(summary.orders);
  const lag = summary.log_position - summary.position;
  $("status-line").textContent = `Engine clock ${when(summary.clock)} · ` +
    `${count(summary.open_cases)} open cases (${rupiah(summary.open_cases_amount)}) · ` +
    `${count(summary.dead_letters)} dead letters · ` +
    (lag > 0 ? `read models ${count(lag)} records behind the log` : "read models up to date");
}

function showMoneyChart(hours) {
  const x = hours.map((h) => h.hour);
  const traces = FIGURES.map((name) => ({
    x, y: hours.map((h) => h[name]), name: FIGURE_NAMES[name], type: "scatter",
    mode: "lines", stackgroup: "money",
    hovertemplate: "%{y:,.0f}<extra>" + FIGURE_NAMES[name] + "</extra>",
  }));
  traces.push({ x, y: hours.map((h) => h.debited), name: FIGURE_NAMES.debited, type: "scatter",
    mode: "lines", line: { dash: "dot", color: "#1d2430" } });
  Plotly.react($("chart-money"), traces, {
    margin: { t: 10, r: 10, b: 40, l: 90 }, separators: ",.",
    yaxis: { title: { text: "rupiah" }, tickformat: ",.0f" },
    xaxis: { title: { text: "engine clock (UTC)" } }, legend: { orientation: "h" },
  }, PLOT_CONFIG);
}

function showCasesChart(counts) {
  const kinds = [...new Set(counts.map((c) => c.kind))].sort();
  const traces = kinds.map((kind) => ({
    type: "bar", name: kind, x: BUCKETS,
    y: BUCKETS.map((b) => counts.filter((c) => c.kind === kind && c.age_bucket === b)
      .reduce((sum, c) => sum + c.count, 0)),
  }));
  Plotly.react($("chart-cases"), traces, {
    barmode: "stack", margin: { t: 10, r: 10, b: 40, l: 50 },
    xaxis: { title: { text: "age on the engine clock" }, type: "category" },
    yaxis: { title: { text: "open cases" } }, legend: { orientation: "h" },
  }, PLOT_CONFIG);
  const select = $("filter-kind");
  const chosen = select.value;
  select.replaceChildren(el("option", "all"));
  select.firstChild.value = "";
  for (const kind of kinds) {
    const option = el("option", kind);
    option.value = kind;
    select.append(option);
  }
  select.value = kinds.includes(chosen) ? chosen : "";
}

/** A list read a page at a time with keyset cursors; `previous` steps back through them. */
class Pager {
  constructor(prefix, load) {
    this.prefix = prefix;
    this.load = load;
    this.cursors = [null];
    $(prefix + "-next").addEventListener("click", () => this.go(this.cursors.length));
    $(prefix + "-prev").addEventListener("click", () => this.go(this.cursors.length - 2));
  }
  reset() { this.cursors = [null]; return this.go(1); }
  async go(pages) {
    if (pages < 1) return;
    this.cursors = this.cursors.slice(0, pages);
    try {
      const page = await this.load(this.cursors[pages - 1]);
      if (page.next_cursor) this.cursors.push(page.next_cursor);
      $(this.prefix + "-page").textContent = `page ${pages}`;
      $(this.prefix + "-prev").disabled = pages === 1;
      $(this.prefix + "-next").disabled = !page.next_cursor;
    } catch (error) { failed(error); }
  }
}

function orderButton(orderId) {
  if (!orderId) return el("td", "—");
  const button = el("button", orderId, "link");
  button.type = "button";
  button.dataset.order = orderId;
  button.addEventListener("click", () => showOrder(orderId));
  const td = document.createElement("td");
  td.append(button);
  return td;
}

const queue = new Pager("queue", async (cursor) => {
  const page = await api("/cases", { kind: $("filter-kind").value,
    age_bucket: $("filter-age").value, limit: $("filter-limit").value, cursor });
  const body = $("queue").querySelector("tbody");
  body.replaceChildren(...page.items.map((c) => {
    const tr = row([el("td", when(c.opened_at)), el("td", `${age(c.age_seconds)} (${c.age_bucket})`),
      el("td", c.reason), orderButton(c.order_id), el("td", c.subject), numCell(rupiah(c.amount)),
      el("td", c.source)]);
    tr.dataset.kind = c.reason;
    tr.dataset.ageBucket = c.age_bucket;
    return tr;
  }));
  if (!page.items.length) body.append(row([el("td", "No open case matches.")]));
  return page;
});

const orders = new Pager("orders", async (cursor) => {
  const page = await api("/orders", { status: $("orders-status").value, limit: 25, cursor });
  const body = $("orders").querySelector("tbody");
  body.replaceChildren(...page.items.map((o) => row([orderButton(o.order_id), el("td", o.status),
    numCell(o.quantity), numCell(o.delivered), numCell(rupiah(o.debited)),
    numCell(rupiah(o.refunded)), numCell(rupiah(o.at_risk)), el("td", o.cases.join(", "))])));
  if (!page.items.length) body.append(row([el("td", "No order matches.")]));
  return page;
});

async function showOrder(orderId) {
  try {
    const [order, story] = await Promise.all([
      api("/orders/" + encodeURIComponent(orderId)).catch(() => null),
      api("/orders/" + encodeURIComponent(orderId) + "/story"),
    ]);
    $("order-title-id").textContent = orderId;
    const facts = $("order-row");
    facts.replaceChildren();
    const shown = order ? [
      ["Status", order.status], ["Shard", order.source], ["Quantity", order.quantity],
      ["Delivered", order.delivered], ["Debited", rupiah(order.debited)],
      ["Kept", rupiah(order.kept)], ["Refunded", rupiah(order.refunded)],
      ["Refund pending", rupiah(order.refund_pending)], ["At risk", rupiah(order.at_risk)],
      ["Cases", order.cases.join(", ") || "—"], ["Placed", when(order.placed_at)],
      ["Paid", when(order.paid_at)], ["Remedied", when(order.remedied_at)],
    ] : [["Status", "not placed (only payments or stamps name it)"]];
    for (const [name, value] of shown) facts.append(el("dt", name), el("dd", value));
    $("story").querySelector("tbody").replaceChildren(...story.entries.map((entry) => {
      const payload = el("pre", JSON.stringify(entry.payload), "payload");
      const cell = document.createElement("td");
      cell.append(payload);
      const tr = row([numCell(entry.position), el("td", entry.kind), el("td", entry.type),
        el("td", entry.record_id), el("td", entry.source), cell]);
      tr.dataset.type = entry.type;
      return tr;
    }));
    $("order-detail").hidden = false;
    $("order-detail").scrollIntoView({ behavior: "instant", block: "start" });
  } catch (error) { failed(error); }
}

// -- signing in, loading, errors -----------------------------------------------------

function failed(error) {
  if (error instanceof Unauthorized) { signOut("That token is not accepted."); return; }
  $("error").textContent = "Could not load: " + error.message;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("dashboard").hidden = true;
  $("refresh").hidden = true;
  $("sign-out").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

async function load() {
  $("error").textContent = "";
  try {
    const [summary, hours, counts] = await Promise.all([
      api("/summary"), api("/money/hourly"), api("/cases/counts")]);
    $("login").hidden = true;
    $("dashboard").hidden = false;
    $("refresh").hidden = false;
    $("sign-out").hidden = false;
    showSummary(summary);
    showMoneyChart(hours);
    showCasesChart(counts);
    await Promise.all([queue.reset(), orders.reset()]);
    document.body.dataset.loaded = "true";
  } catch (error) { failed(error); }
}

function start() {
  const statusSelect = $("orders-status");
  for (const status of STATUSES) {
    const option = el("option", status);
    option.value = status;
    statusSelect.append(option);
  }
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    load();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", () => load());
  $("queue-filters").addEventListener("change", () => queue.reset());
  statusSelect.addEventListener("change", () => orders.reset());
  $("order-lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("order-id").value.trim();
    if (id) showOrder(id);
  });
  if (sessionStorage.getItem(TOKEN_KEY)) load(); else signOut();
}

start();
