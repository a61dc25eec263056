/* The lobby: list installed bots, create a conversation, then go to it. */
"use strict";

(function () {
  const {el, api, errorText, savedNickname, saveNickname} = window.Chat;
  const form = document.getElementById("create-form");
  const botList = document.getElementById("bot-list");
  const errorBox = document.getElementById("create-error");
  const button = document.getElementById("create-button");
  const nickname = document.getElementById("nickname");

  nickname.value = savedNickname();

  async function loadBots() {
    const result = await api("GET", "/api/bots");
    botList.replaceChildren();
    const bots = (result.ok && result.body && result.body.bots) || [];
    if (!result.ok) {
      botList.append(el("p", {class: "muted small"}, "The list of bots could not be loaded."));
      return;
    }
    if (!bots.length) {
      botList.append(el("p", {class: "muted small"}, "No bots are installed."));
      return;
    }
    for (const bot of bots) {
      const id = "bot-" + bot.name.replace(/[^\w-]/g, "_");
      botList.append(
        el("label", {class: "bot-option", for: id},
          el("input", {type: "checkbox", id, name: "bots", value: bot.name}),
          el("span", {class: "bot-text"},
            el("span", {class: "bot-name"}, bot.name, " ", el("span", {class: "badge"}, "bot")),
            el("span", {class: "muted small"}, bot.description || "No description."),
            bot.trigger === "mention" ? el("span", {class: "muted small"}, "Answers when @mentioned.") : null)));
    }
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const name = document.getElementById("conv-name").value.trim();
    const nick = nickname.value.trim();
    if (!nick) {
      showError("Please pick a nickname.");
      nickname.focus();
      return;
    }
    const bots = [...form.querySelectorAll("input[name=bots]:checked")].map((input) => input.value);
    button.disabled = true;
    button.textContent = "Creating…";
    const result = await api("POST", "/api/conversations", {name, nickname: nick, bots});
    if (result.ok) {
      saveNickname(nick);
      window.location.assign("/c/" + result.body.conversation.id + "/");
      return;
    }
    button.disabled = false;
    button.textContent = "Create conversation";
    showError(errorText(result, "The conversation could not be created."));
  });

  loadBots();
})();
