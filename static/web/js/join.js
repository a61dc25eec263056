/* The join form: pick a nickname, join through the API (the session remembers us), enter. */
"use strict";

(function () {
  const {api, errorText, savedNickname, saveNickname} = window.Chat;
  const form = document.getElementById("join-form");
  if (!form) return;
  const input = document.getElementById("nickname");
  const errorBox = document.getElementById("join-error");
  const button = document.getElementById("join-button");
  input.value = savedNickname();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const nick = input.value.trim();
    if (!nick) {
      errorBox.textContent = "Please pick a nickname.";
      errorBox.hidden = false;
      input.focus();
      return;
    }
    button.disabled = true;
    const result = await api("POST", "/api/conversations/" + form.dataset.conversation + "/join", {nickname: nick});
    if (result.ok) {
      saveNickname(nick);
      window.location.reload();
      return;
    }
    button.disabled = false;
    errorBox.textContent = errorText(result, "Could not join.");
    errorBox.hidden = false;
  });
})();
