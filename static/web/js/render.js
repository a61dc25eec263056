/* Rendering message bodies by kind, always by building DOM nodes (never innerHTML).
 *   text      plain text, web links made clickable
 *   markdown  a small safe subset: paragraphs, lists, code, **bold**, *italic*, `code`, [links](https://…)
 *   options   buttons (a click sends option.choose)      table   a real <table>
 *   chart     a Plotly figure (plotly.js loaded from this server on first use)
 *   location  coordinates and an OpenStreetMap link      files   previews / players / download links
 */
"use strict";

window.ChatRender = (function () {
  const {el, icon, formatBytes} = window.Chat;

  // ---- links --------------------------------------------------------------------------

  function safeHref(href) {
    try {
      const url = new URL(href, window.location.href);
      return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
    } catch (err) {
      return null;
    }
  }

  function link(href, text) {
    const safe = safeHref(href);
    if (!safe) return document.createTextNode(text);
    const external = new URL(safe).origin !== window.location.origin;
    return el("a", {href: safe, target: external ? "_blank" : null, rel: external ? "noopener noreferrer" : null}, text);
  }

  const URL_RE = /\bhttps?:\/\/[^\s<>"')\]]+[^\s<>"')\].,;:!?]/g;

  /** Text with its web addresses as links. */
  function linkify(text) {
    const out = [];
    let last = 0;
    for (const match of text.matchAll(URL_RE)) {
      if (match.index > last) out.push(document.createTextNode(text.slice(last, match.index)));
      out.push(link(match[0], match[0]));
      last = match.index + match[0].length;
    }
    if (last < text.length) out.push(document.createTextNode(text.slice(last)));
    return out;
  }

  // ---- markdown (small, safe) -----------------------------------------------------------

  const INLINE_RE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*|_[^_\n]+_)|(\[[^\]\n]+\]\((?:[^()\s]|\([^()\s]*\))+\))/g;

  function inline(text) {
    const out = [];
    let last = 0;
    for (const match of text.matchAll(INLINE_RE)) {
      if (match.index > last) out.push(...linkify(text.slice(last, match.index)));
      const token = match[0];
      if (match[1]) out.push(el("code", {}, token.slice(1, -1)));
      else if (match[2]) out.push(el("strong", {}, ...inline(token.slice(2, -2))));
      else if (match[3]) out.push(el("em", {}, ...inline(token.slice(1, -1))));
      else {
        const parts = /^\[([^\]]+)\]\((.+)\)$/.exec(token);
        out.push(link(parts[2], parts[1]));
      }
      last = match.index + token.length;
    }
    if (last < text.length) out.push(...linkify(text.slice(last)));
    return out;
  }

  function markdown(source) {
    const root = el("div", {class: "md"});
    const lines = source.replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (/^```/.test(line)) {
        const code = [];
        i++;
        while (i < lines.length && !/^```/.test(lines[i])) code.push(lines[i++]);
        i++;
        root.append(el("pre", {}, el("code", {}, code.join("\n"))));
      } else if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
        const ordered = /^\s*\d/.test(line);
        const list = el(ordered ? "ol" : "ul");
        while (i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i])) {
          list.append(el("li", {}, ...inline(lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, ""))));
          i++;
        }
        root.append(list);
      } else if (/^#{1,6}\s+/.test(line)) {
        root.append(el("p", {class: "md-heading"}, el("strong", {}, ...inline(line.replace(/^#{1,6}\s+/, "")))));
        i++;
      } else if (/^>\s?/.test(line)) {
        const quote = [];
        while (i < lines.length && /^>\s?/.test(lines[i])) quote.push(lines[i++].replace(/^>\s?/, ""));
        root.append(el("blockquote", {}, ...inline(quote.join("\n"))));
      } else if (!line.trim()) {
        i++;
      } else {
        const para = [];
        while (i < lines.length && lines[i].trim() && !/^(```|#{1,6}\s|>|\s*([-*+]|\d+[.)])\s+)/.test(lines[i])) {
          para.push(lines[i++]);
        }
        root.append(el("p", {}, ...inline(para.join("\n"))));
      }
    }
    return root;
  }

  // ---- rich kinds ---------------------------------------------------------------------

  function cellText(value) {
    if (value === null || value === undefined) return "";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  /** data: {columns|headers: [...], rows: [[...]] or [{col: value}], title?} */
  function table(data, caption) {
    let columns = data.columns || data.headers || null;
    const rows = Array.isArray(data.rows) ? data.rows : (Array.isArray(data.data) ? data.data : []);
    if (!columns && rows.length && rows[0] && typeof rows[0] === "object" && !Array.isArray(rows[0])) {
      columns = Object.keys(rows[0]);
    }
    columns = (columns || []).map((c) => (c && typeof c === "object" ? (c.label || c.name || "") : c));
    const tbl = el("table", {class: "data-table"});
    if (caption) tbl.append(el("caption", {}, caption));
    if (columns.length) {
      tbl.append(el("thead", {}, el("tr", {}, columns.map((c) => el("th", {scope: "col"}, cellText(c))))));
    }
    const body = el("tbody");
    for (const row of rows) {
      const cells = Array.isArray(row) ? row : columns.map((c) => (row || {})[c]);
      body.append(el("tr", {}, cells.map((c) => el("td", {}, cellText(c)))));
    }
    tbl.append(body);
    return el("div", {class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption || "Table"}, tbl);
  }

  let plotlyLoading = null;
  function loadPlotly(url) {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    if (!plotlyLoading) {
      plotlyLoading = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = url;
        script.async = true;
        script.onload = () => resolve(window.Plotly);
        script.onerror = () => { plotlyLoading = null; reject(new Error("plotly.js could not be loaded")); };
        document.head.append(script);
      });
    }
    return plotlyLoading;
  }

  /** data: {figure: {data, layout}} (or the figure itself). */
  function chart(data, label, ctx) {
    const figure = data.figure || data;
    const box = el("div", {class: "chart", role: "img", "aria-label": label || "Chart"});
    const status = el("p", {class: "muted small"}, "Loading chart…");
    box.append(status);
    loadPlotly(ctx.plotlyUrl).then((Plotly) => {
      status.remove();
      const layout = Object.assign({margin: {t: 36, r: 16, b: 40, l: 48}, autosize: true}, figure.layout || {});
      Plotly.newPlot(box, figure.data || [], layout, {responsive: true, displaylogo: false});
      box.dataset.rendered = "true";
    }).catch((err) => {
      status.textContent = "The chart could not be drawn: " + err.message;
    });
    return box;
  }

  function location(data) {
    const lat = Number(data.latitude), lon = Number(data.longitude);
    const osm = "https://www.openstreetmap.org/?mlat=" + lat + "&mlon=" + lon + "#map=16/" + lat + "/" + lon;
    const name = data.name || data.title || data.label || data.address || "";
    return el("div", {class: "location"},
      el("span", {class: "location-pin"}, icon("pin", 22)),
      el("div", {},
        name ? el("div", {class: "location-name"}, name) : null,
        el("div", {class: "muted small"}, lat.toFixed(5) + ", " + lon.toFixed(5)),
        link(osm, "Open in OpenStreetMap")));
  }

  function options(message, ctx) {
    const list = (message.data && message.data.options) || [];
    const group = el("div", {class: "options", role: "group", "aria-label": message.text || "Options"});
    for (const option of list) {
      const label = option && typeof option === "object" ? (option.label ?? option.value) : option;
      const value = option && typeof option === "object" ? option.value : option;
      const button = el("button", {type: "button", class: "btn btn-option", dataset: {value: String(value)}}, String(label));
      button.addEventListener("click", () => ctx.onChoose(message, value, button, group));
      group.append(button);
    }
    if (ctx.readOnly) for (const b of group.querySelectorAll("button")) b.disabled = true;
    return group;
  }

  function attachment(att) {
    const size = formatBytes(att.size || 0);
    const download = el("a", {href: att.url, download: att.name, class: "file-link"},
      icon("download", 16), att.name,
      el("span", {class: "muted small"}, " · " + size));
    let preview = null;
    if (att.kind === "image") {
      preview = el("a", {href: att.url, target: "_blank", rel: "noopener", class: "image-link"},
        el("img", {src: att.url, alt: att.name, loading: "lazy", class: "preview-image"}));
    } else if (att.kind === "audio" || att.kind === "voice") {
      preview = el("audio", {controls: true, preload: "metadata", src: att.url, "aria-label": att.name});
    } else if (att.kind === "video") {
      preview = el("video", {controls: true, preload: "metadata", src: att.url, class: "preview-video", "aria-label": att.name});
    }
    return el("div", {class: "attachment attachment-" + att.kind}, preview, download);
  }

  /** The body of one message (everything below the sender line). */
  function body(message, ctx) {
    const data = message.data || {};
    const parts = [];
    const kind = message.kind;
    if (kind === "markdown") parts.push(markdown(message.text || ""));
    else if (kind === "chart") {
      if (message.text) parts.push(el("p", {class: "text"}, ...linkify(message.text)));
      parts.push(chart(data, message.text, ctx));
    } else if (kind === "table") {
      parts.push(table(data, data.title || message.text || ""));
    } else if (message.text) {
      parts.push(el("p", {class: "text"}, ...linkify(message.text)));
    }
    if (kind === "options" || (kind === "poll" && Array.isArray(data.options))) parts.push(options(message, ctx));
    if (kind === "location" && data.latitude !== undefined) parts.push(location(data));
    if (kind === "contact") {
      const bits = [data.name, data.phone, data.email].filter(Boolean).map(String);
      if (bits.length) parts.push(el("p", {class: "contact"}, icon("person", 16), " " + bits.join(" · ")));
    }
    for (const att of message.attachments || []) parts.push(attachment(att));
    return parts;
  }

  return {body, markdown, linkify, safeHref, loadPlotly};
})();
