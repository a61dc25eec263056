/* The room: live messages over the conversation WebSocket, history over HTTP.
 *
 * Order and completeness: every visible message has a seq; the page keeps one element per seq
 * (a second copy of a seq is dropped), inserts in seq order, and on every (re)connect asks the
 * server to replay everything after the last seq it holds (?after_seq=N), so messages missed
 * while offline appear and nothing shows twice. Own messages show as pending (keyed by
 * client_id) until the ack; unacked ones are resent on reconnect (the server is idempotent on
 * client_id), refused ones can be retried.
 */
"use strict";

(function () {
  const {el, api, errorText, formatBytes, wireCopyButton} = window.Chat;
  const R = window.ChatRender;
  const root = document.getElementById("room");
  const cfg = root.dataset;
  const $ = (id) => document.getElementById(id);

  const ui = {
    timeline: $("timeline"), list: $("messages"), banner: $("banner"), conn: $("conn-state"),
    typing: $("typing"), input: $("message-input"), send: $("send-button"), composer: $("composer"),
    attach: $("attach-button"), fileInput: $("file-input"), tray: $("tray"), uploadError: $("upload-error"),
    dropZone: $("drop-zone"), people: $("people"), peopleList: $("people-list"), peopleCount: $("people-count"),
    peopleToggle: $("people-toggle"), older: $("load-older"), historyStart: $("history-start"),
    announcer: $("announcer"), jump: $("jump-latest"),
  };

  const state = {
    me: cfg.participant,
    lastSeq: 0, // highest seq held; the resume point
    minSeq: null, // lowest seq held; the scroll-back point
    hasMore: false,
    loadingOlder: false,
    bySeq: new Map(), // seq -> <li> (or null once deleted: still counts as seen)
    byId: new Map(), // message id -> {message, li}
    pending: new Map(), // client_id -> {frame, li, status}
    choices: new Map(), // client_id -> options group awaiting its ack
    participants: new Map(),
    presence: new Map(), // participant id -> {online, version}: the newest flag heard (see onPresence)
    reads: new Map(), // participant id -> seq
    typing: new Map(), // participant id -> timer
    ws: null,
    attempts: 0,
    reconnectTimer: null,
    pingTimer: null,
    pongDeadline: null,
    stopped: false, // removed / not found: no more reconnects
    readOnly: cfg.status === "ended",
    mutedUntil: null,
    mutedTimer: null,
    limits: {},
    uploads: [],
    lastTypingSent: 0,
    readSent: 0,
    readTimer: null,
  };

  const timeFormat = new Intl.DateTimeFormat(undefined, {hour: "2-digit", minute: "2-digit"});
  const dateFormat = new Intl.DateTimeFormat(undefined, {dateStyle: "medium", timeStyle: "short"});

  function newClientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  // ---- connection state ---------------------------------------------------------------

  function setConn(kind, text) {
    ui.conn.className = "conn conn-" + kind;
    ui.conn.textContent = text;
    root.dataset.connection = kind;
  }

  function showBanner(text, kind) {
    ui.banner.replaceChildren(el("span", {}, text));
    ui.banner.className = "banner banner-" + (kind || "info");
    ui.banner.hidden = !text;
  }

  function setReadOnly(reason, kind) {
    state.readOnly = true;
    ui.input.disabled = true;
    ui.send.disabled = true;
    ui.attach.disabled = true;
    ui.input.placeholder = reason;
    for (const button of ui.list.querySelectorAll(".btn-option")) button.disabled = true;
    showBanner(reason, kind || "info");
  }

  function applyMute() {
    clearTimeout(state.mutedTimer);
    if (state.readOnly) return;
    const until = state.mutedUntil ? new Date(state.mutedUntil) : null;
    if (until && until > new Date()) {
      ui.input.disabled = true;
      ui.send.disabled = true;
      ui.attach.disabled = true;
      ui.input.placeholder = "You are muted";
      showBanner("You are muted until " + dateFormat.format(until) + ", so you cannot send messages.", "warn");
      state.mutedTimer = setTimeout(applyMute, Math.min(until - new Date() + 500, 2 ** 31 - 1));
    } else if (ui.input.disabled) {
      ui.input.disabled = false;
      ui.send.disabled = false;
      ui.attach.disabled = false;
      ui.input.placeholder = "Write a message…";
      showBanner("");
    }
  }

  // ---- scrolling ----------------------------------------------------------------------

  function atBottom() {
    const t = ui.timeline;
    return t.scrollHeight - t.scrollTop - t.clientHeight < 48;
  }

  function scrollToBottom() {
    ui.timeline.scrollTop = ui.timeline.scrollHeight;
    ui.jump.hidden = true;
  }

  // ---- rendering messages ---------------------------------------------------------------

  function senderName(message) {
    return message.sender ? message.sender.name : "";
  }

  function renderMessage(message, opts) {
    const mine = message.sender && message.sender.id === state.me;
    const created = message.created_at ? new Date(message.created_at) : new Date();
    const time = el("time", {datetime: created.toISOString(), title: dateFormat.format(created)}, timeFormat.format(created));
    if (message.kind === "system") {
      return el("li", {class: "msg system", dataset: {seq: message.seq, id: message.id}},
        el("p", {}, el("span", {class: "system-text"}, message.text || ""), " ", time));
    }
    const isBot = message.sender && message.sender.kind === "bot";
    const li = el("li", {
      class: "msg" + (mine ? " mine" : "") + (isBot ? " bot" : ""),
      dataset: {seq: message.seq ?? "", id: message.id || "", sender: message.sender ? message.sender.id : ""},
    });
    const head = el("div", {class: "msg-head"},
      el("span", {class: "sender"}, senderName(message)),
      isBot ? el("span", {class: "badge", title: "This participant is a bot"}, "bot") : null,
      time,
      el("span", {class: "msg-state"}));
    const quoted = message.quoted_message_id && state.byId.get(message.quoted_message_id);
    const quote = quoted
      ? el("div", {class: "quote"}, el("span", {class: "quote-sender"}, senderName(quoted.message)), " ",
        (quoted.message.text || "").slice(0, 140))
      : null;
    const body = el("div", {class: "msg-body"}, quote, R.body(message, bodyContext()));
    li.append(head, body, el("div", {class: "msg-foot"}));
    if (opts && opts.pending) li.classList.add("pending");
    return li;
  }

  function bodyContext() {
    return {plotlyUrl: cfg.plotlyUrl, onChoose: chooseOption, readOnly: state.readOnly};
  }

  /** Neighbouring messages of one sender within five minutes share one header. */
  function regroup(li) {
    for (const node of [li, li && li.nextElementSibling]) {
      if (!node || node.classList.contains("system")) continue;
      const prev = node.previousElementSibling;
      const same = prev && !prev.classList.contains("system") && prev.dataset.sender === node.dataset.sender &&
        Math.abs(new Date(node.querySelector("time").dateTime) - new Date(prev.querySelector("time").dateTime)) < 300000;
      node.classList.toggle("continued", Boolean(same));
    }
  }

  /** Insert a rendered message at its seq's place (pending ones always stay last). */
  function placeBySeq(li, seq) {
    let after = null;
    for (let node = ui.list.lastElementChild; node; node = node.previousElementSibling) {
      const s = node.dataset.seq ? Number(node.dataset.seq) : null;
      if (s !== null && s < seq) { after = node; break; }
    }
    if (after) after.after(li);
    else ui.list.prepend(li);
    regroup(li);
  }

  function announce(message) {
    const who = message.kind === "system" ? "" : senderName(message) + ": ";
    let what = message.text || "";
    if (!what && message.attachments && message.attachments.length) what = "sent " + message.attachments.map((a) => a.name).join(", ");
    if (!what) what = "sent a " + message.kind;
    ui.announcer.append(el("p", {}, who + what.slice(0, 200)));
    while (ui.announcer.childElementCount > 5) ui.announcer.firstElementChild.remove();
  }

  /** Add one message from history, a replay or live. Returns true when it was new. */
  function addMessage(message, opts) {
    const live = opts && opts.live;
    if (message.seq === null || message.seq === undefined) return false; // not visible yet (premoderation)
    const seq = message.seq;
    if (state.bySeq.has(seq)) return false; // already held: nothing twice
    const wasAtBottom = atBottom();
    const gap = live && state.lastSeq > 0 && seq > state.lastSeq + 1;
    const gapFrom = state.lastSeq;
    state.lastSeq = Math.max(state.lastSeq, seq);
    state.minSeq = state.minSeq === null ? seq : Math.min(state.minSeq, seq);
    // Our own message: the pending element gives way to the real one.
    if (message.client_id && message.sender && message.sender.id === state.me) {
      const entry = state.pending.get(message.client_id);
      if (entry) {
        entry.li.remove();
        state.pending.delete(message.client_id);
      }
    }
    if (message.hidden) {
      state.bySeq.set(seq, null);
      return true;
    }
    const li = renderMessage(message);
    state.bySeq.set(seq, li);
    state.byId.set(message.id, {message, li});
    placeBySeq(li, seq);
    if (message.data && message.data.option && message.sender && message.sender.id === state.me) {
      markChosen(message.data.option.message_id, message.data.option.value);
    }
    if (live) {
      const mine = message.sender && message.sender.id === state.me;
      if (!mine) announce(message);
      if (wasAtBottom || mine) scrollToBottom();
      else ui.jump.hidden = false;
      scheduleRead();
      renderReadMarks();
    }
    if (gap) fillGap(gapFrom);
    return true;
  }

  async function fillGap(afterSeq) {
    let cursor = afterSeq;
    for (;;) {
      const result = await api("GET", cfg.api + "/messages?after_seq=" + cursor + "&limit=200");
      if (!result.ok) return;
      for (const m of result.body.messages) { addMessage(m); cursor = Math.max(cursor, m.seq); }
      if (!result.body.has_more) break;
    }
    renderReadMarks();
  }

  function removeMessage(id) {
    const entry = state.byId.get(id);
    if (!entry) return;
    const next = entry.li.nextElementSibling;
    entry.li.remove();
    state.byId.delete(id);
    if (entry.message.seq !== null) state.bySeq.set(entry.message.seq, null);
    if (next) regroup(next);
    renderReadMarks();
  }

  function updateMessage(message) {
    if (message.hidden) return removeMessage(message.id);
    const entry = state.byId.get(message.id);
    if (!entry) return addMessage(message, {live: true});
    const li = renderMessage(message);
    entry.li.replaceWith(li);
    state.byId.set(message.id, {message, li});
    if (message.seq !== null) state.bySeq.set(message.seq, li);
    regroup(li);
    renderReadMarks();
  }

  // ---- history ------------------------------------------------------------------------

  function setHasMore(hasMore) {
    state.hasMore = hasMore;
    ui.older.hidden = !hasMore;
    ui.historyStart.hidden = hasMore;
  }

  async function loadLatest() {
    const result = await api("GET", cfg.api + "/messages?limit=50");
    if (!result.ok) return result;
    for (const m of result.body.messages) addMessage(m);
    setHasMore(result.body.has_more);
    scrollToBottom();
    return result;
  }

  async function loadOlder() {
    if (state.loadingOlder || !state.hasMore || state.minSeq === null) return;
    state.loadingOlder = true;
    ui.older.disabled = true;
    ui.older.textContent = "Loading…";
    const before = ui.timeline.scrollHeight;
    const top = ui.timeline.scrollTop;
    const result = await api("GET", cfg.api + "/messages?before_seq=" + state.minSeq + "&limit=50");
    ui.older.disabled = false;
    ui.older.textContent = "Load older messages";
    state.loadingOlder = false;
    if (!result.ok) return;
    for (const m of result.body.messages) addMessage(m);
    ui.timeline.scrollTop = top + (ui.timeline.scrollHeight - before); // keep the reader's place
    setHasMore(result.body.has_more);
    renderReadMarks();
  }

  // ---- people, typing, read marks -------------------------------------------------------

  // Presence frames from several server processes may arrive out of order: each flag carries
  // the room's presence version it was set at, and the newest heard wins, whether it came in a
  // list (``participants``, all at one version) or alone (``presence``).
  function heardPresence(id, online, version) {
    const known = state.presence.get(id);
    if (known && known.version >= version) return false;
    state.presence.set(id, {online, version});
    return true;
  }

  function setParticipants(list, presenceVersion) {
    for (const p of list) {
      if (p.kind === "bot") {
        p.online = true; // always (the HTTP API's list has no flags)
        continue;
      }
      if (presenceVersion !== undefined && p.online !== undefined) heardPresence(p.id, p.online, presenceVersion);
      const known = state.presence.get(p.id);
      if (known) p.online = known.online;
    }
    state.participants = new Map(list.map((p) => [p.id, p]));
    for (const p of list) {
      if ((state.reads.get(p.id) || 0) < (p.last_read_seq || 0)) state.reads.set(p.id, p.last_read_seq);
    }
    const me = state.participants.get(state.me);
    if (me) {
      state.mutedUntil = me.muted_until;
      applyMute();
    }
    renderPeople();
    renderTyping();
    renderReadMarks();
  }

  function onPresence(changes) {
    let changed = false;
    for (const c of changes) {
      if (!heardPresence(c.participant_id, c.online, c.version)) continue;
      const p = state.participants.get(c.participant_id);
      if (p) p.online = c.online;
      changed = true;
    }
    if (changed) renderPeople();
  }

  function renderPeople() {
    const people = [...state.participants.values()].sort((a, b) =>
      (b.id === state.me) - (a.id === state.me) || (a.kind === "bot") - (b.kind === "bot") ||
      Boolean(b.online) - Boolean(a.online) || a.name.localeCompare(b.name));
    ui.peopleList.replaceChildren(...people.map((p) => {
      const online = p.online === undefined ? null : Boolean(p.online);
      return el("li", {class: "person" + (online ? " online" : ""), dataset: {participant: p.id}},
        el("span", {class: "presence", "aria-hidden": "true"}),
        el("span", {class: "person-name"}, p.name, p.id === state.me ? " (you)" : ""),
        p.kind === "bot" ? el("span", {class: "badge"}, "bot") : null,
        p.role !== "member" ? el("span", {class: "tag"}, p.role) : null,
        el("span", {class: "visually-hidden"}, online === null ? "" : online ? ", online" : ", offline"));
    }));
    ui.peopleCount.textContent = String(people.length);
  }

  function renderTyping() {
    const names = [...state.typing.keys()].map((id) => state.participants.get(id)).filter(Boolean).map((p) => p.name);
    let text = "";
    if (names.length === 1) text = names[0] + " is typing…";
    else if (names.length === 2) text = names[0] + " and " + names[1] + " are typing…";
    else if (names.length > 2) text = "Several people are typing…";
    ui.typing.textContent = text;
  }

  function onTyping(frame) {
    if (frame.participant_id === state.me) return;
    clearTimeout(state.typing.get(frame.participant_id));
    if (frame.active) {
      const ttl = (frame.ttl || 6) * 1000;
      state.typing.set(frame.participant_id, setTimeout(() => {
        state.typing.delete(frame.participant_id);
        renderTyping();
      }, ttl));
    } else {
      state.typing.delete(frame.participant_id);
    }
    renderTyping();
  }

  /** "Seen by …" under the last message each other person has read. */
  function renderReadMarks() {
    for (const foot of ui.list.querySelectorAll(".seen")) foot.remove();
    const items = [...ui.list.querySelectorAll("li.msg:not(.system)[data-seq]")].filter((li) => li.dataset.seq !== "");
    if (!items.length) return;
    const marks = new Map();
    for (const [pid, seq] of state.reads) {
      const p = state.participants.get(pid);
      if (!p || pid === state.me || p.kind === "bot" || !seq) continue;
      let target = null;
      for (let i = items.length - 1; i >= 0; i--) {
        if (Number(items[i].dataset.seq) <= seq) { target = items[i]; break; }
      }
      if (!target) continue;
      if (!marks.has(target)) marks.set(target, []);
      marks.get(target).push(p.name);
    }
    for (const [li, names] of marks) {
      li.append(el("div", {class: "seen"}, "Seen by " + names.join(", ")));
    }
  }

  function scheduleRead() {
    clearTimeout(state.readTimer);
    state.readTimer = setTimeout(sendRead, 400);
  }

  function sendRead() {
    if (document.visibilityState !== "visible" || !atBottom()) return;
    if (state.lastSeq > state.readSent && send({type: "read", seq: state.lastSeq})) state.readSent = state.lastSeq;
  }

  // ---- the socket -----------------------------------------------------------------------

  function send(frame) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    if (state.stopped) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const url = scheme + "//" + window.location.host + cfg.wsPath + "?after_seq=" + state.lastSeq;
    setConn("connecting", state.attempts ? "Reconnecting…" : "Connecting…");
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      return scheduleReconnect();
    }
    state.ws = ws;
    ws.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (err) { return; }
      if (ws === state.ws) onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== state.ws) return;
      state.ws = null;
      clearInterval(state.pingTimer);
      onClosed(event.code);
    });
  }

  function scheduleReconnect() {
    if (state.stopped) return;
    const delay = Math.min(10000, 500 * 2 ** state.attempts) + Math.random() * 300;
    state.attempts += 1;
    setConn("offline", "Offline — reconnecting in " + Math.ceil(delay / 1000) + " s");
    for (const entry of state.pending.values()) {
      if (entry.status === "sending") setPendingStatus(entry, "waiting", "Waiting for connection…");
    }
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function onClosed(code) {
    if (code === 4403) {
      state.stopped = true;
      setConn("stopped", "Removed");
      setReadOnly(state.removedReason || "You were removed from this conversation.", "error");
    } else if (code === 4401) {
      state.stopped = true;
      setConn("stopped", "Signed out");
      setReadOnly("This browser is no longer a participant here. Reload the page to join again.", "error");
    } else if (code === 4404) {
      state.stopped = true;
      setConn("stopped", "Not found");
      setReadOnly("This conversation does not exist any more.", "error");
    } else {
      scheduleReconnect();
    }
  }

  function startPings() {
    clearInterval(state.pingTimer);
    state.pingTimer = setInterval(() => {
      if (state.pongDeadline && Date.now() > state.pongDeadline && state.ws) {
        state.ws.close(); // no pong: the connection is dead even if the browser has not noticed
        return;
      }
      if (send({type: "ping"}) && !state.pongDeadline) state.pongDeadline = Date.now() + 10000;
    }, 25000);
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "welcome":
        state.attempts = 0;
        state.presence.clear(); // versions start again after a room has been empty: this socket reads it anew
        if (frame.participants) setParticipants(frame.participants, frame.presence_version);
        setConn("online", "Connected");
        if (frame.participant) {
          state.mutedUntil = frame.participant.muted_until;
          applyMute();
        }
        if (frame.conversation && frame.conversation.status === "ended") {
          setReadOnly("This conversation has ended. You can read it but not write.");
        }
        startPings();
        resendPending();
        scheduleRead();
        break;
      case "message.new":
        addMessage(frame.message, {live: true});
        break;
      case "message.updated":
        updateMessage(frame.message);
        break;
      case "message.deleted":
        removeMessage(frame.id);
        break;
      case "message.ack":
        onAck(frame);
        break;
      case "typing":
        onTyping(frame);
        break;
      case "read":
        state.reads.set(frame.participant_id, Math.max(state.reads.get(frame.participant_id) || 0, frame.seq));
        renderReadMarks();
        break;
      case "participants":
        setParticipants(frame.participants || [], frame.presence_version);
        break;
      case "presence":
        onPresence(frame.changes || []);
        break;
      case "conversation.ended":
        setReadOnly("This conversation has ended. You can read it but not write.");
        break;
      case "pong":
        state.pongDeadline = null;
        break;
      case "error":
        onError(frame);
        break;
      default:
        break;
    }
  }

  function onError(frame) {
    const detail = frame.detail || frame.code;
    if (frame.code === "removed" || frame.code === "banned" || frame.code === "left" || frame.code === "not_participant") {
      state.removedReason = frame.code === "left" ? "You left this conversation." : "You were removed from this conversation" + (frame.code === "removed" && frame.detail ? ": " + frame.detail : ".");
      return;
    }
    if (frame.code === "conversation_ended") setReadOnly("This conversation has ended. You can read it but not write.");
    if (frame.code === "muted") {
      const when = /until (\S+)$/.exec(detail || "");
      if (when && !Number.isNaN(Date.parse(when[1]))) {
        state.mutedUntil = when[1];
        applyMute();
      } else {
        showBanner("You cannot send messages: " + detail, "warn");
      }
    }
    const choice = frame.client_id && state.choices.get(frame.client_id);
    if (choice) {
      state.choices.delete(frame.client_id);
      for (const b of choice.querySelectorAll("button")) b.disabled = state.readOnly;
      showNotice("Your choice was not sent: " + detail);
      return;
    }
    const entry = frame.client_id && state.pending.get(frame.client_id);
    if (entry) {
      setPendingStatus(entry, "failed", "Not sent: " + (frame.code === "muted" ? "you are muted" : detail));
    } else if (frame.code !== "muted" && frame.code !== "conversation_ended") {
      showNotice(detail);
    }
  }

  function showNotice(text) {
    ui.uploadError.textContent = text;
    ui.uploadError.hidden = !text;
  }

  // ---- sending ------------------------------------------------------------------------

  function setPendingStatus(entry, status, text) {
    entry.status = status;
    entry.li.classList.toggle("failed", status === "failed");
    entry.li.classList.toggle("pending", status !== "failed");
    entry.li.querySelector(".msg-state").textContent = text;
    const foot = entry.li.querySelector(".msg-foot");
    foot.replaceChildren();
    if (status === "failed") {
      foot.append(
        el("button", {type: "button", class: "btn btn-small", onclick: () => retry(entry)}, "Retry"),
        el("button", {type: "button", class: "btn btn-small btn-ghost", onclick: () => discard(entry)}, "Discard"));
    }
  }

  function retry(entry) {
    setPendingStatus(entry, "sending", "Sending…");
    if (!send(entry.frame)) setPendingStatus(entry, "waiting", "Waiting for connection…");
  }

  function discard(entry) {
    entry.li.remove();
    state.pending.delete(entry.frame.client_id);
  }

  function resendPending() {
    for (const entry of state.pending.values()) {
      if (entry.status === "sending" || entry.status === "waiting") {
        setPendingStatus(entry, "sending", "Sending…");
        send(entry.frame);
      }
    }
  }

  function onAck(frame) {
    const choice = state.choices.get(frame.client_id);
    if (choice) {
      state.choices.delete(frame.client_id);
      return;
    }
    const entry = state.pending.get(frame.client_id);
    if (!entry) return;
    if (frame.seq === null || frame.seq === undefined) {
      setPendingStatus(entry, "moderation", "Waiting for a moderator's approval");
      return;
    }
    if (state.bySeq.has(frame.seq)) { // message.new came first
      entry.li.remove();
      state.pending.delete(frame.client_id);
      return;
    }
    // Keep the element until its message.new arrives (it carries the full message).
    setPendingStatus(entry, "acked", "Sent");
    entry.li.classList.remove("pending");
  }

  function sendMessage() {
    if (state.readOnly) return;
    const text = ui.input.value;
    const uploading = state.uploads.filter((u) => u.status === "uploading");
    if (uploading.length) {
      showNotice("Wait for the upload to finish, then send.");
      return;
    }
    const ready = state.uploads.filter((u) => u.status === "done");
    if (!text.trim() && !ready.length) return;
    const max = state.limits.MAX_TEXT_LENGTH;
    if (max && text.length > max) {
      showNotice("Your message is " + text.length + " characters long; the limit is " + max + ".");
      return;
    }
    showNotice("");
    const frame = {type: "message.send", client_id: newClientId(), text};
    if (ready.length) frame.attachments = ready.map((u) => u.attachment.id);
    const preview = {
      id: "", seq: null, kind: "text", text, data: {}, created_at: new Date().toISOString(),
      sender: {id: state.me, name: cfg.name, kind: "human"},
      attachments: ready.map((u) => u.attachment),
    };
    const li = renderMessage(preview, {pending: true});
    li.dataset.clientId = frame.client_id;
    ui.list.append(li);
    regroup(li);
    const entry = {frame, li, status: "sending"};
    state.pending.set(frame.client_id, entry);
    setPendingStatus(entry, "sending", "Sending…");
    if (!send(frame)) setPendingStatus(entry, "waiting", "Waiting for connection…");
    ui.input.value = "";
    autosize();
    for (const u of ready) u.li.remove();
    state.uploads = state.uploads.filter((u) => !ready.includes(u));
    ui.tray.hidden = state.uploads.length === 0;
    state.lastTypingSent = 0;
    scrollToBottom();
  }

  function chooseOption(message, value, button, group) {
    if (state.readOnly) return;
    const clientId = newClientId();
    if (!send({type: "option.choose", message_id: message.id, value, client_id: clientId})) {
      showNotice("Not connected; try again in a moment.");
      return;
    }
    state.choices.set(clientId, group);
    for (const b of group.querySelectorAll("button")) {
      b.disabled = true;
      b.setAttribute("aria-pressed", b === button ? "true" : "false");
    }
  }

  function markChosen(messageId, value) {
    const entry = state.byId.get(messageId);
    if (!entry) return;
    for (const b of entry.li.querySelectorAll(".btn-option")) {
      if (b.dataset.value === String(value)) b.setAttribute("aria-pressed", "true");
    }
  }

  // ---- composer -------------------------------------------------------------------------

  function autosize() {
    ui.input.style.height = "auto";
    ui.input.style.height = Math.min(ui.input.scrollHeight, 200) + "px";
  }

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
  });

  ui.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendMessage();
    }
  });

  ui.input.addEventListener("input", () => {
    autosize();
    const now = Date.now();
    if (ui.input.value.trim() && now - state.lastTypingSent > 3000) {
      if (send({type: "typing", active: true})) state.lastTypingSent = now;
    } else if (!ui.input.value.trim() && state.lastTypingSent) {
      send({type: "typing", active: false});
      state.lastTypingSent = 0;
    }
  });

  // ---- attachments ----------------------------------------------------------------------

  const LIMIT_BY_KIND = {image: "MAX_IMAGE_SIZE", video: "MAX_VIDEO_SIZE", audio: "MAX_AUDIO_SIZE", file: "MAX_ATTACHMENT_SIZE"};
  const KIND_WORD = {image: "images", video: "videos", audio: "audio files", file: "files"};

  function guessKind(file) {
    const type = (file.type || "").split("/")[0];
    return ["image", "video", "audio"].includes(type) ? type : "file";
  }

  function addFiles(files) {
    if (state.readOnly || ui.attach.disabled) return;
    const problems = [];
    const max = state.limits.MAX_ATTACHMENTS_PER_MESSAGE || 10;
    for (const file of files) {
      if (state.uploads.length >= max) {
        problems.push("At most " + max + " files per message.");
        break;
      }
      const kind = guessKind(file);
      const limit = state.limits[LIMIT_BY_KIND[kind]];
      if (limit && file.size > limit) {
        problems.push("“" + file.name + "” is " + formatBytes(file.size) + "; " + KIND_WORD[kind] +
          " may be at most " + formatBytes(limit) + ".");
        continue;
      }
      upload(file, kind);
    }
    showNotice(problems.join(" "));
  }

  function upload(file, kind) {
    const progress = el("progress", {max: "100", value: "0", "aria-label": "Uploading " + file.name});
    const status = el("span", {class: "tray-status muted small"}, "Uploading…");
    const thumb = kind === "image" ? el("img", {class: "tray-thumb", alt: "", src: URL.createObjectURL(file)}) : el("span", {class: "tray-icon"}, window.Chat.icon("file", 24));
    const item = {file, kind, status: "uploading", attachment: null, xhr: null, li: null};
    const remove = el("button", {type: "button", class: "btn btn-icon btn-small", "aria-label": "Remove " + file.name, title: "Remove"}, "✕");
    item.li = el("li", {class: "tray-item"}, thumb,
      el("div", {class: "tray-text"}, el("span", {class: "tray-name"}, file.name), el("span", {class: "muted small"}, formatBytes(file.size)), progress, status),
      remove);
    remove.addEventListener("click", () => {
      if (item.xhr && item.status === "uploading") item.xhr.abort();
      item.li.remove();
      state.uploads = state.uploads.filter((u) => u !== item);
      ui.tray.hidden = state.uploads.length === 0;
      ui.input.focus();
    });
    state.uploads.push(item);
    ui.tray.append(item.li);
    ui.tray.hidden = false;

    const form = new FormData();
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    xhr.open("POST", cfg.api + "/attachments");
    xhr.setRequestHeader("X-CSRFToken", window.Chat.csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) progress.value = Math.round((event.loaded / event.total) * 100);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      if (xhr.status === 201 && body && body.attachment) {
        item.status = "done";
        item.attachment = body.attachment;
        progress.value = 100;
        status.textContent = "Ready";
        item.li.classList.add("done");
      } else {
        fail(errorText({status: xhr.status, body}, "the server refused the file (" + xhr.status + ")"));
      }
    });
    xhr.addEventListener("error", () => fail("the upload failed; check your connection"));
    function fail(detail) {
      item.status = "error";
      item.li.classList.add("error");
      progress.remove();
      status.textContent = "Refused";
      showNotice("“" + file.name + "” was not uploaded: " + detail);
    }
    xhr.send(form);
  }

  ui.attach.addEventListener("click", () => ui.fileInput.click());
  ui.fileInput.addEventListener("change", () => {
    addFiles([...ui.fileInput.files]);
    ui.fileInput.value = "";
  });

  ui.input.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData ? event.clipboardData.files : [])];
    if (files.length) {
      event.preventDefault();
      addFiles(files.map((f, i) => (f.name && f.name !== "image.png" ? f : new File([f], "pasted-" + Date.now() + "-" + i + "." + ((f.type.split("/")[1] || "png")), {type: f.type}))));
    }
  });

  const wrap = ui.timeline.parentElement;
  let dragDepth = 0;
  const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
  wrap.addEventListener("dragenter", (event) => {
    if (!hasFiles(event) || state.readOnly) return;
    event.preventDefault();
    dragDepth += 1;
    ui.dropZone.hidden = false;
  });
  wrap.addEventListener("dragover", (event) => {
    if (hasFiles(event) && !state.readOnly) event.preventDefault();
  });
  wrap.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) ui.dropZone.hidden = true;
  });
  wrap.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    ui.dropZone.hidden = true;
    addFiles([...event.dataTransfer.files]);
  });

  // ---- page wiring ----------------------------------------------------------------------

  ui.older.addEventListener("click", loadOlder);
  ui.jump.addEventListener("click", () => { scrollToBottom(); ui.input.focus(); });
  ui.timeline.addEventListener("scroll", () => {
    if (atBottom()) { ui.jump.hidden = true; scheduleRead(); }
  });
  if ("IntersectionObserver" in window) {
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && state.hasMore && state.minSeq !== null) loadOlder();
    }, {root: ui.timeline}).observe($("older"));
  }
  document.addEventListener("visibilitychange", scheduleRead);
  window.addEventListener("online", () => { if (!state.ws && !state.stopped) connect(); });

  ui.peopleToggle.addEventListener("click", () => {
    const open = ui.people.classList.toggle("open");
    ui.peopleToggle.setAttribute("aria-expanded", String(open));
  });
  const shareButton = $("share-button");
  wireCopyButton(shareButton, () => shareButton.dataset.shareUrl);

  async function start() {
    if (state.readOnly) setReadOnly("This conversation has ended. You can read it but not write.");
    const [limits, detail] = await Promise.all([api("GET", cfg.limitsUrl), api("GET", cfg.api)]);
    if (limits.ok) state.limits = limits.body;
    if (detail.ok) {
      setParticipants(detail.body.participants.filter((p) => !p.left_at && !p.banned));
    } else if (detail.status === 401 || detail.status === 403) {
      state.stopped = true;
      setConn("stopped", "Not a participant");
      setReadOnly(errorText(detail), "error");
      return;
    }
    await loadLatest();
    connect();
    if (!state.readOnly) ui.input.focus();
  }

  root.chatState = state; // for debugging in the console
  start();
})();
