// Bridle console: watch and drive sessions through the public /v1 API.
//
// No framework and no build step: a hash router, a DOM helper that only ever
// sets text (event content is untrusted), and an SSE reader on fetch (the
// browser's EventSource cannot send the API key header).

const BETA = "managed-agents-2026-04-01";
const KEY = "bridle.apiKey";
const main = document.getElementById("main");

// ---- DOM ------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
  main.focus({ preventScroll: true });
}

function toast(msg) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.textContent = ""), 5000);
}

function age(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

function json(v) {
  return JSON.stringify(v, null, 2);
}

// ---- API ------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

function headers(extra) {
  return {
    "x-api-key": sessionStorage.getItem(KEY) || "",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": BETA,
    ...extra,
  };
}

async function api(method, path, body) {
  const init = { method, headers: headers(body ? { "content-type": "application/json" } : {}) };
  if (body) init.body = JSON.stringify(body);
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: reported below with the status.
  }
  if (!resp.ok) {
    const err = data && data.error;
    throw new ApiError(resp.status, err ? err.type : "http_error", err ? err.message : `HTTP ${resp.status}`);
  }
  return { data, resp };
}

function send(sessionId, ...events) {
  return api("POST", `/v1/sessions/${encodeURIComponent(sessionId)}/events`, { events });
}

// Reads a session's event stream and calls `onFrame(type, data)` for each
// frame, reconnecting with Last-Event-ID after a drop.
class Follow {
  constructor(sessionId, onFrame, onState) {
    this.sessionId = sessionId;
    this.onFrame = onFrame;
    this.onState = onState;
    this.last = 0; // Resume from the start: the stream replays the whole log.
    this.abort = new AbortController();
    this.conn = null;
    // A connection that outlived a network change may be dead without
    // knowing it: start a fresh one (resuming after the last event seen).
    this.onOnline = () => this.conn && this.conn.abort();
    this.onOffline = () => this.onState("offline");
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.run();
  }

  close() {
    this.abort.abort();
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
  }

  async run() {
    let delay = 500;
    while (!this.abort.signal.aborted) {
      this.conn = new AbortController();
      try {
        const url = `/v1/sessions/${encodeURIComponent(this.sessionId)}/events/stream?event_deltas[]=agent.message`;
        const resp = await fetch(url, {
          headers: headers({ "last-event-id": String(this.last), accept: "text/event-stream" }),
          signal: AbortSignal.any([this.abort.signal, this.conn.signal]),
        });
        if (!resp.ok) {
          const body = await resp.json().catch(() => null);
          const msg = body && body.error ? body.error.message : `HTTP ${resp.status}`;
          this.onState(`stream refused: ${msg}`);
          if (resp.status === 401 || resp.status === 404) return;
        } else {
          this.onState("live");
          delay = 500;
          await this.read(resp.body);
          this.onState("reconnecting");
        }
      } catch (e) {
        if (this.abort.signal.aborted) return;
        this.onState("reconnecting");
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 8000);
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        this.frame(buf.slice(0, cut));
        buf = buf.slice(cut + 2);
      }
    }
  }

  frame(block) {
    let type = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "event") type = value;
      else if (field === "id") id = value;
      else if (field === "data") data.push(value);
    }
    if (type === "ping" || data.length === 0) return;
    if (id !== null && /^\d+$/.test(id)) this.last = Number(id);
    try {
      this.onFrame(type, JSON.parse(data.join("\n")));
    } catch (e) {
      console.warn("unreadable frame", e);
    }
  }
}

// ---- pages ----------------------------------------------------------------

let cleanup = [];
function onLeave(fn) {
  cleanup.push(fn);
}

function signIn(message) {
  document.getElementById("nav").hidden = true;
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, size: 48 });
  const err = h("p", { class: "error", role: "alert" }, message || "");
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: async (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(KEY, input.value.trim());
        try {
          await api("GET", "/v1/agents?limit=1");
          location.hash = "#/sessions";
          route();
        } catch (e) {
          sessionStorage.removeItem(KEY);
          err.textContent = e.status === 401 ? "That API key was not accepted." : `Sign-in failed: ${e.message}`;
        }
      },
    },
    h("label", { for: "api-key" }, "API key"),
    h("div", { class: "row" }, input, h("button", { class: "primary", type: "submit" }, "Sign in")),
    h("p", { class: "muted" }, "The key stays in this tab's session storage and is sent only to this server."),
    err,
  );
  show(h("h1", {}, "Sign in"), form);
  input.focus();
}

function failed(e) {
  if (e.status === 401) {
    sessionStorage.removeItem(KEY);
    signIn("Your API key is no longer accepted. Sign in again.");
    return;
  }
  show(h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, `${e.type || "error"}: ${e.message}`));
}

const STATUSES = ["", "running", "idle", "rescheduling", "terminated"];
// The harness of a session never changes: ask once per session.
const harnessOf = new Map();

async function sessionsPage() {
  const filter = h("input", { id: "filter", type: "search", placeholder: "id, title or agent" });
  const status = h("select", { id: "status" }, STATUSES.map((s) => h("option", { value: s }, s || "any")));
  const body = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Older sessions");
  const note = h("p", { class: "muted", "aria-live": "polite" });
  let rows = [];
  let next = null;

  const render = () => {
    const q = filter.value.trim().toLowerCase();
    const want = status.value;
    const shown = rows.filter((s) => {
      if (want && s.status !== want) return false;
      if (!q) return true;
      const agent = s.agent ? `${s.agent.id} ${s.agent.name || ""}` : "";
      return `${s.id} ${s.title || ""} ${agent}`.toLowerCase().includes(q);
    });
    body.replaceChildren(
      ...shown.map((s) =>
        h(
          "tr",
          { "data-session": s.id },
          h("td", { class: "id", "data-label": "Session" }, h("a", { href: `#/sessions/${s.id}` }, s.id)),
          h("td", { "data-label": "Title" }, s.title || ""),
          h("td", { "data-label": "Status" }, h("span", { class: `badge ${s.status}` }, s.status)),
          h("td", { "data-label": "Harness" }, harnessOf.get(s.id) || ""),
          h("td", { "data-label": "Agent" }, s.agent ? s.agent.name || s.agent.id : ""),
          h("td", { "data-label": "Age" }, age(s.created_at)),
        ),
      ),
    );
    note.textContent = shown.length ? "" : rows.length ? "No session matches the filter." : "No sessions yet.";
  };

  const learnHarness = async (list) => {
    for (const s of list.filter((s) => !harnessOf.has(s.id)).slice(0, 20)) {
      try {
        const { resp } = await api("GET", `/v1/sessions/${s.id}`);
        harnessOf.set(s.id, resp.headers.get("bridle-harness") || "");
      } catch {
        harnessOf.set(s.id, "");
      }
    }
    render();
  };

  // The newest page again, merged into what is shown (live status).
  const refresh = async () => {
    const { data } = await api("GET", "/v1/sessions?limit=50&order=desc");
    const byId = new Map(rows.map((s) => [s.id, s]));
    for (const s of data.data) byId.set(s.id, s);
    rows = [...byId.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    if (next === null && data.next_page) {
      next = data.next_page;
      more.hidden = false;
    }
    render();
    learnHarness(data.data);
  };

  more.addEventListener("click", async () => {
    const { data } = await api("GET", `/v1/sessions?limit=50&order=desc&page=${encodeURIComponent(next)}`);
    rows = rows.concat(data.data.filter((s) => !rows.some((r) => r.id === s.id)));
    next = data.next_page;
    more.hidden = !next;
    render();
    learnHarness(data.data);
  });
  filter.addEventListener("input", render);
  status.addEventListener("change", render);

  show(
    h("h1", {}, "Sessions"),
    h(
      "div",
      { class: "row" },
      h("div", {}, h("label", { for: "filter" }, "Filter"), filter),
      h("div", {}, h("label", { for: "status" }, "Status"), status),
    ),
    h(
      "table",
      { class: "list", id: "sessions" },
      h("thead", {}, h("tr", {}, ["Session", "Title", "Status", "Harness", "Agent", "Age"].map((c) => h("th", { scope: "col" }, c)))),
      body,
    ),
    note,
    more,
  );
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 2000);
  onLeave(() => clearInterval(timer));
}

// One event of the log, rendered for people. Tool results are folded into
// their tool call's entry.
function renderEvent(ev, ctx) {
  const text = (content) =>
    (content || [])
      .map((b) => (b.type === "text" ? b.text : `[${b.type}${b.source && b.source.file_id ? " " + b.source.file_id : ""}]`))
      .join("\n");
  switch (ev.type) {
    case "user.message":
      return h("li", { class: "user" }, h("div", { class: "who" }, "User"), h("div", { class: "text" }, text(ev.content)));
    case "agent.message":
      return h("li", { class: "agent", "data-event": ev.id }, h("div", { class: "who" }, "Agent"), h("div", { class: "text" }, text(ev.content)));
    case "agent.thinking":
      return h("li", { class: "agent" }, h("details", {}, h("summary", {}, "Thinking"), h("p", { class: "muted" }, "The agent thought before acting; the API carries no thinking text.")));
    case "agent.tool_use":
    case "agent.mcp_tool_use":
    case "agent.custom_tool_use": {
      const kind = ev.type === "agent.mcp_tool_use" ? `MCP ${ev.mcp_server_name}` : ev.type === "agent.custom_tool_use" ? "Custom tool" : "Tool";
      const result = h("div", { class: "result" });
      const actions = h("div", { class: "actions" });
      const li = h(
        "li",
        { class: "tool", "data-event": ev.id },
        h("div", { class: "who" }, `${kind} call`),
        h("div", {}, h("strong", {}, ev.name), ev.evaluated_permission ? h("span", { class: "muted" }, ` (${ev.evaluated_permission})`) : ""),
        h("pre", { "aria-label": "input" }, json(ev.input)),
        actions,
        result,
      );
      ctx.tools.set(ev.id, { li, result, actions, ev });
      return li;
    }
    case "agent.tool_result":
    case "agent.mcp_tool_result": {
      const useId = ev.tool_use_id || ev.mcp_tool_use_id;
      const tool = ctx.tools.get(useId);
      const body = h("div", {}, h("div", { class: "who" }, ev.is_error ? "Error result" : "Result"), h("pre", {}, text(ev.content) || json(ev.content)));
      if (tool) {
        tool.result.replaceChildren(body);
        // The question is answered: drop its buttons, keep what the user chose.
        if (tool.actions.querySelector("button")) tool.actions.replaceChildren();
        return null;
      }
      return h("li", { class: "tool" }, body);
    }
    case "user.tool_confirmation":
    case "user.custom_tool_result": {
      const tool = ctx.tools.get(ev.tool_use_id || ev.custom_tool_use_id);
      if (tool) {
        tool.actions.replaceChildren(h("span", { class: "muted" }, ev.type === "user.tool_confirmation" ? `You chose: ${ev.result}` : "Result sent"));
        if (ev.type === "user.custom_tool_result") tool.result.replaceChildren(h("pre", {}, text(ev.content)));
      }
      return null;
    }
    case "user.interrupt":
      return h("li", { class: "status" }, "Interrupt sent");
    case "session.error": {
      const e = ev.error || {};
      const retry = e.retry_status ? e.retry_status.type : "";
      return h("li", { class: "error", role: "note" }, h("div", { class: "who" }, `Error: ${e.type || "unknown"}`), h("div", { class: "text" }, e.message || ""), retry ? h("div", { class: "muted" }, `retry status: ${retry}`) : "");
    }
    default:
      if (ev.type.startsWith("session.status_")) {
        const st = ev.type.slice("session.status_".length);
        const why = ev.stop_reason ? ` (${ev.stop_reason.type})` : "";
        return h("li", { class: "status" }, `${new Date(ev.processed_at || Date.now()).toLocaleTimeString()} · ${st}${why}`);
      }
      return null; // spans and other bookkeeping stay out of the way
  }
}

async function sessionPage(id) {
  const { data: session, resp } = await api("GET", `/v1/sessions/${encodeURIComponent(id)}`);
  const statusBadge = h("span", { class: `badge ${session.status}`, id: "session-status" }, session.status);
  const live = h("span", { class: "muted", id: "stream-state", "aria-live": "polite" }, "connecting");
  const log = h("ol", { class: "log", id: "log", "aria-label": "Event log" });
  const ctx = { tools: new Map(), seen: new Set(), drafts: new Map() };

  const facts = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Status"), h("dd", {}, statusBadge, " ", live),
    h("dt", {}, "Harness"), h("dd", {}, resp.headers.get("bridle-harness") || ""),
    h("dt", {}, "Agent"), h("dd", {}, session.agent ? h("a", { href: `#/agents/${session.agent.id}` }, session.agent.name || session.agent.id) : ""),
    h("dt", {}, "Environment"), h("dd", {}, session.environment_id || ""),
    h("dt", {}, "Created"), h("dd", {}, session.created_at || ""),
  );

  const setStatus = (s) => {
    statusBadge.textContent = s;
    statusBadge.className = `badge ${s}`;
  };

  // requires_action lists the calls waiting on the user: offer the answers.
  const offer = (eventIds) => {
    for (const eid of eventIds || []) {
      const tool = ctx.tools.get(eid);
      if (!tool || tool.actions.childElementCount) continue;
      if (tool.ev.type === "agent.custom_tool_use") {
        const area = h("textarea", { "aria-label": `Result for ${tool.ev.name}` });
        tool.actions.replaceChildren(
          area,
          h("button", { type: "button", class: "primary", onclick: () => send(id, { type: "user.custom_tool_result", custom_tool_use_id: eid, content: [{ type: "text", text: area.value }] }).catch((e) => toast(e.message)) }, "Send result"),
        );
      } else {
        tool.actions.replaceChildren(
          h("button", { type: "button", class: "primary", onclick: () => send(id, { type: "user.tool_confirmation", tool_use_id: eid, result: "allow" }).catch((e) => toast(e.message)) }, "Allow"),
          h("button", { type: "button", class: "danger", onclick: () => send(id, { type: "user.tool_confirmation", tool_use_id: eid, result: "deny", deny_message: "Denied in the console" }).catch((e) => toast(e.message)) }, "Deny"),
        );
      }
    }
  };

  const onFrame = (type, data) => {
    if (type === "event_start" || type === "event_delta") {
      const eid = type === "event_start" ? data.event.id : data.event_id;
      if (ctx.seen.has(eid)) return;
      let draft = ctx.drafts.get(eid);
      if (!draft) {
        if (type === "event_start" && data.event.type !== "agent.message") return;
        draft = h("li", { class: "agent draft", "data-event": eid }, h("div", { class: "who" }, "Agent (typing)"), h("div", { class: "text" }));
        ctx.drafts.set(eid, draft);
        log.append(draft);
      }
      if (type === "event_delta" && data.delta && data.delta.content) draft.lastChild.textContent += data.delta.content.text || "";
      return;
    }
    if (type === "error") {
      toast(data.error ? data.error.message : "stream error");
      return;
    }
    const ev = data;
    if (!ev || !ev.type || ctx.seen.has(ev.id)) return;
    ctx.seen.add(ev.id);
    if (ev.type.startsWith("session.status_")) setStatus(ev.type.slice("session.status_".length));
    const li = renderEvent(ev, ctx);
    const draft = ctx.drafts.get(ev.id);
    if (draft) {
      ctx.drafts.delete(ev.id);
      if (li) draft.replaceWith(li);
      else draft.remove();
    } else if (li) {
      const atEnd = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
      log.append(li);
      if (atEnd) li.scrollIntoView({ block: "nearest" });
    }
    if (ev.type === "session.status_idle" && ev.stop_reason && ev.stop_reason.type === "requires_action") offer(ev.stop_reason.event_ids);
  };

  const box = h("textarea", { id: "message", placeholder: "Message the agent" });
  const composer = h(
    "form",
    {
      class: "composer",
      onsubmit: async (e) => {
        e.preventDefault();
        const textValue = box.value.trim();
        if (!textValue) return;
        try {
          await send(id, { type: "user.message", content: [{ type: "text", text: textValue }] });
          box.value = "";
        } catch (err) {
          toast(`Not sent: ${err.message}`);
        }
      },
    },
    h("label", { for: "message" }, "Message"),
    box,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Send"),
      h("button", { type: "button", class: "danger", id: "interrupt", onclick: () => send(id, { type: "user.interrupt" }).then(() => toast("Interrupt sent"), (e) => toast(e.message)) }, "Interrupt"),
    ),
  );
  box.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) composer.requestSubmit();
  });

  show(h("p", {}, h("a", { href: "#/sessions" }, "← Sessions")), h("h1", {}, session.title || session.id), facts, log, composer);
  const follow = new Follow(id, onFrame, (s) => (live.textContent = s));
  onLeave(() => follow.close());
}

// Read-only lists: agents, environments, vaults (credentials without secrets;
// the API never returns them).
async function listPage(title, path, columns) {
  const { data } = await api("GET", `${path}?limit=100`);
  show(
    h("h1", {}, title),
    data.data.length
      ? h(
          "table",
          { class: "list" },
          h("thead", {}, h("tr", {}, columns.map(([c]) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, data.data.map((row) => h("tr", {}, columns.map(([c, f]) => h("td", { "data-label": c }, f(row)))))),
        )
      : h("p", { class: "muted" }, "None yet."),
  );
}

async function detailPage(title, path, extra) {
  const { data } = await api("GET", path);
  const nodes = [h("h1", {}, `${title} ${data.name || data.id}`), h("pre", {}, json(data))];
  if (extra) nodes.push(...(await extra(data)));
  show(...nodes);
}

const idLink = (kind) => (r) => h("a", { href: `#/${kind}/${r.id}` }, r.id);

async function route() {
  for (const fn of cleanup.splice(0)) fn();
  if (!sessionStorage.getItem(KEY)) return signIn();
  document.getElementById("nav").hidden = false;
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  try {
    switch (parts[0] || "sessions") {
      case "sessions":
        return parts[1] ? await sessionPage(parts[1]) : await sessionsPage();
      case "agents":
        return parts[1]
          ? await detailPage("Agent", `/v1/agents/${encodeURIComponent(parts[1])}`)
          : await listPage("Agents", "/v1/agents", [["Agent", idLink("agents")], ["Name", (r) => r.name], ["Model", (r) => (r.model && r.model.id) || r.model], ["Version", (r) => r.version]]);
      case "environments":
        return parts[1]
          ? await detailPage("Environment", `/v1/environments/${encodeURIComponent(parts[1])}`)
          : await listPage("Environments", "/v1/environments", [["Environment", idLink("environments")], ["Name", (r) => r.name], ["Type", (r) => r.config && r.config.type]]);
      case "vaults":
        return parts[1]
          ? await detailPage("Vault", `/v1/vaults/${encodeURIComponent(parts[1])}`, async (v) => {
              const { data } = await api("GET", `/v1/vaults/${encodeURIComponent(v.id)}/credentials?limit=100`);
              return [
                h("h2", {}, "Credentials"),
                h("table", { class: "list" },
                  h("thead", {}, h("tr", {}, ["Credential", "Name", "Type", "Server"].map((c) => h("th", { scope: "col" }, c)))),
                  h("tbody", {}, data.data.map((c) => h("tr", {},
                    h("td", { class: "id", "data-label": "Credential" }, c.id),
                    h("td", { "data-label": "Name" }, c.display_name || ""),
                    h("td", { "data-label": "Type" }, c.auth ? c.auth.type : ""),
                    h("td", { "data-label": "Server" }, c.auth ? c.auth.mcp_server_url || c.auth.llm_base_url || "" : ""))))),
              ];
            })
          : await listPage("Vaults", "/v1/vaults", [["Vault", idLink("vaults")], ["Name", (r) => r.display_name || r.name || ""]]);
      default:
        show(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/sessions" }, "Sessions")));
    }
  } catch (e) {
    failed(e);
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  location.hash = "";
  route();
});
window.addEventListener("hashchange", route);
route();
