/* Shared helpers for the chatroom pages. No framework, no build step.
 * Safety rule: user data only ever goes into the page as text (textContent / attributes set
 * through the DOM), never through innerHTML. */
"use strict";

window.Chat = (function () {
  /** Build an element: el("a", {href: url, class: "x"}, "text", otherNode). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const ICONS = {
    pin: "M12 21s-7-6.2-7-11.5A7 7 0 0 1 19 9.5C19 14.8 12 21 12 21zm0-9a2.5 2.5 0 1 0 0-5 2.5 2.5 0 0 0 0 5z",
    file: "M6 2h8l5 5v15H6zM14 2v5h5",
    download: "M12 3v12m-5-5 5 5 5-5M5 21h14",
    person: "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zm-7 9a7 7 0 0 1 14 0",
  };

  /** A small line icon (inline SVG built through the DOM), hidden from screen readers. */
  function icon(name, size) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", String(size || 18));
    svg.setAttribute("height", String(size || 18));
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("class", "icon icon-" + name);
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", ICONS[name] || ICONS.file);
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "1.8");
    path.setAttribute("stroke-linecap", "round");
    path.setAttribute("stroke-linejoin", "round");
    svg.append(path);
    return svg;
  }

  function csrfToken() {
    return document.body.dataset.csrf || "";
  }

  /** JSON over fetch; resolves to {ok, status, body}. The session cookie identifies us. */
  async function api(method, url, body) {
    const init = {method, credentials: "same-origin", headers: {"Accept": "application/json"}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRFToken"] = csrfToken();
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      return {ok: false, status: 0, body: {error: {code: "network", detail: "the server cannot be reached"}}};
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    return {ok: response.ok, status: response.status, body: data};
  }

  function errorText(result, fallback) {
    const error = result && result.body && result.body.error;
    if (error && error.detail) return typeof error.detail === "string" ? error.detail : JSON.stringify(error.detail);
    return fallback || "Something went wrong (" + (result ? result.status : "?") + ")";
  }

  function formatBytes(n) {
    if (n < 1024) return n + " B";
    const units = ["KB", "MB", "GB"];
    let value = n / 1024, i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
    return (value >= 10 ? Math.round(value) : Math.round(value * 10) / 10) + " " + units[i];
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (err) {
      return false;
    }
  }

  /** A button that copies a link; says "Copied" for a moment (or selects the field to copy by hand). */
  function wireCopyButton(button, getText, field) {
    button.addEventListener("click", async () => {
      const ok = await copyText(getText());
      const label = button.dataset.label || button.textContent;
      button.dataset.label = label;
      if (ok) {
        button.textContent = "Copied";
        setTimeout(() => { button.textContent = label; }, 1500);
      } else if (field) {
        field.focus();
        field.select();
      } else {
        window.prompt("Copy this link", getText());
      }
    });
  }

  const NICK_KEY = "chatroom.nickname";
  function savedNickname() {
    try { return localStorage.getItem(NICK_KEY) || ""; } catch (err) { return ""; }
  }
  function saveNickname(name) {
    try { localStorage.setItem(NICK_KEY, name); } catch (err) { /* private mode */ }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const button of document.querySelectorAll(".copy-button[data-copy-target]")) {
      const field = document.getElementById(button.dataset.copyTarget);
      if (field) wireCopyButton(button, () => field.value, field);
    }
  });

  return {el, icon, api, errorText, formatBytes, copyText, wireCopyButton, savedNickname, saveNickname, csrfToken};
})();
