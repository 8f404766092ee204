// Uploads each chosen file in its own request, so every file gets its own progress bar and its
// own result; the form still works without this script, posting all files at once.
(function () {
  'use strict';
  var form = document.getElementById('upload-form');
  var input = document.getElementById('files');
  var list = document.getElementById('progress');
  if (!form || !input || !list || !window.FormData || !window.XMLHttpRequest) return;
  var token = form.querySelector('input[name="_csrf"]').value;
  var maxBytes = Number(form.getAttribute('data-max-bytes'));

  function uploadOne(file) {
    return new Promise(function (resolve) {
      var item = document.createElement('li');
      var label = document.createElement('span');
      var bar = document.createElement('progress');
      label.textContent = file.name;
      bar.max = 100;
      bar.value = 0;
      item.appendChild(label);
      item.appendChild(bar);
      list.appendChild(item);

      function finish(ok, message) {
        item.className = ok ? 'done' : 'failed';
        label.textContent = file.name + ': ' + message;
        bar.value = ok ? 100 : bar.value;
        resolve(ok);
      }
      if (maxBytes && file.size > maxBytes) {
        finish(false, 'larger than the upload limit');
        return;
      }

      var data = new FormData();
      data.append('_csrf', token);
      data.append('images', file, file.name);
      var xhr = new XMLHttpRequest();
      xhr.open('POST', form.action);
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.setRequestHeader('X-CSRF-Token', token);
      xhr.upload.onprogress = function (event) {
        if (event.lengthComputable) bar.value = Math.round((event.loaded / event.total) * 100);
      };
      xhr.onload = function () {
        if (xhr.status === 201) return finish(true, 'uploaded');
        var message = 'failed (' + xhr.status + ')';
        try {
          message = JSON.parse(xhr.responseText).error.message;
        } catch {
          // Not JSON (a proxy's error page, say): keep the status text.
        }
        finish(false, message);
      };
      xhr.onerror = function () {
        finish(false, 'network error, try again');
      };
      xhr.send(data);
    });
  }

  var button = form.querySelector('button[type="submit"]');
  var uploading = false;

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    // A second click or Enter while files are on their way would upload them all again.
    if (uploading) return;
    var files = Array.prototype.slice.call(input.files);
    if (files.length === 0) return;
    uploading = true;
    if (button) button.disabled = true;
    list.textContent = '';
    files
      .reduce(function (previous, file) {
        return previous.then(function (okSoFar) {
          return uploadOne(file).then(function (ok) {
            return okSoFar && ok;
          });
        });
      }, Promise.resolve(true))
      .then(function (allOk) {
        if (allOk) {
          window.location.assign('/?uploaded=' + files.length);
          return;
        }
        // Some failed: let the user read the messages, pick files again and retry.
        uploading = false;
        if (button) button.disabled = false;
      });
  });
})();
