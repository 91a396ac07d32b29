// The upload form of a pool's page (templates/storage/pool.html, storage.views): a file goes into a new volume
// in chunks, each POSTed with its offset to the upload session the form starts, so a dropped connection costs
// one chunk. A failed chunk is sent again after asking the session where it stands; when the retries run out the
// page says so, and choosing the same file with the same name resumes it (the server hands back the unfinished
// session of that name and size, with the offset it reached). When the last chunk is in, "upload-finished" on
// <body> makes the volume list fetch itself again (its hx-trigger). The template owns every word, in the reader's
// language: the page's, and those this file shows, on its script tag (data-text-*).
(function () {
  "use strict";

  const words = document.currentScript.dataset;  // read now: currentScript is null once this has run
  const CHUNK_BYTES = 8 * 1024 * 1024;  // storage.views.CHUNK_LIMIT takes up to 9 MiB
  const RETRIES = 5;

  const section = document.getElementById("upload");
  if (!section) {
    return;
  }
  const form = document.getElementById("upload-form");
  const fileInput = document.getElementById("upload-file");
  const nameInput = document.getElementById("upload-name");
  const cancelButton = document.getElementById("upload-cancel");
  const progress = document.getElementById("upload-progress");
  const statusLine = document.getElementById("upload-status");
  const startUrl = section.dataset.startUrl;
  const csrfToken = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
  let current = null;  // the session being sent: {chunk_url, status_url, cancel_url, received, total}
  let cancelled = false;

  // The template's words for `name` (data-text-<name>), each {key} filled in from `values`.
  function said(name, values) {
    return words["text" + name].replace(/\{(\w+)\}/g, function (whole, key) {
      return values && key in values ? String(values[key]) : whole;
    });
  }

  function mib(bytes) {
    return (bytes / 1048576).toFixed(1) + " MiB";
  }

  function show(received, total) {
    const percent = total ? Math.floor(received * 100 / total) : 100;
    progress.hidden = false;
    progress.value = percent;
    statusLine.textContent = said("Progress", {percent: percent, received: mib(received), total: mib(total)});
  }

  function showErrors(errors) {
    section.querySelectorAll("[data-field]").forEach(function (slot) {
      slot.textContent = (errors[slot.dataset.field] || []).join(" ");
    });
  }

  function request(method, url, body, onProgress) {
    return new Promise(function (resolve, reject) {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("X-CSRFToken", csrfToken);
      xhr.setRequestHeader("Accept", "application/json");
      if (onProgress) {
        xhr.upload.addEventListener("progress", function (event) { onProgress(event.loaded); });
      }
      xhr.onload = function () {
        let answer = {};
        try {
          answer = JSON.parse(xhr.responseText);
        } catch (ignored) {
          answer = {error: said("ServerAnswered", {status: xhr.status})};
        }
        resolve({status: xhr.status, answer: answer});
      };
      xhr.onerror = function () { reject(new Error(said("ConnectionDropped"))); };
      xhr.send(body);
    });
  }

  function wait(milliseconds) {
    return new Promise(function (resolve) { setTimeout(resolve, milliseconds); });
  }

  async function start(file, name) {
    const body = new URLSearchParams({name: name, size_bytes: String(file.size)});
    const reply = await request("POST", startUrl, body);
    if (reply.status !== 201 && reply.status !== 200) {
      showErrors(reply.answer.errors || {__all__: [reply.answer.error || said("CouldNotStart")]});
      return null;
    }
    return reply.answer;
  }

  async function send(file) {
    let failures = 0;
    while (current.received < current.total && !cancelled) {
      const offset = current.received;
      const chunk = file.slice(offset, Math.min(offset + CHUNK_BYTES, current.total));
      let reply;
      try {
        reply = await request("POST", current.chunk_url + "?offset=" + offset, chunk, function (loaded) {
          show(offset + loaded, current.total);
        });
      } catch (dropped) {
        reply = {status: 0, answer: {}};
      }
      if (reply.status === 200 || reply.status === 409) {
        failures = 0;
        current.received = reply.answer.received;
      } else if (reply.status === 410 || reply.status === 404) {
        showErrors({__all__: [reply.answer.error || said("Gone")]});
        return false;
      } else {
        failures += 1;
        if (failures > RETRIES) {
          showErrors({__all__: [(reply.answer.error || said("ConnectionDropped")) + " " + said("Resume")]});
          return false;
        }
        await wait(500 * Math.pow(2, failures));
        try {
          const status = await request("GET", current.status_url, null);
          if (status.status === 200) {
            current.received = status.answer.received;
          }
        } catch (ignored) {
          // Still down: the next attempt waits longer.
        }
      }
      show(current.received, current.total);
    }
    return !cancelled;
  }

  fileInput.addEventListener("change", function () {
    if (!nameInput.value && fileInput.files.length) {
      nameInput.value = fileInput.files[0].name.replace(/[^A-Za-z0-9._+-]/g, "_").replace(/^[.+-]+/, "");
    }
  });

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const file = fileInput.files[0];
    const name = nameInput.value;
    showErrors({});
    cancelled = false;
    current = await start(file, name);
    if (!current) {
      return;
    }
    form.querySelector("button[type=submit]").disabled = true;
    cancelButton.hidden = false;
    show(current.received, current.total);
    const finished = await send(file);
    form.querySelector("button[type=submit]").disabled = false;
    cancelButton.hidden = true;
    if (finished) {
      statusLine.textContent = said("Uploaded", {total: mib(current.total), name: name});
      document.body.dispatchEvent(new CustomEvent("upload-finished", {bubbles: true}));
    }
  });

  cancelButton.addEventListener("click", async function () {
    if (!current) {
      return;
    }
    cancelled = true;
    const reply = await request("POST", current.cancel_url, null);
    progress.hidden = true;
    statusLine.textContent = reply.answer.message || "";
    if (reply.answer.errors) {
      showErrors(reply.answer.errors);
    }
  });
}());
