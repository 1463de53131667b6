// The dashboard's only script: the replay slider and live progress over server-sent events.
(function () {
  var framesEl = document.getElementById('frames');
  if (framesEl) {
    var frames = JSON.parse(framesEl.textContent);
    var marks = JSON.parse(document.getElementById('marks').textContent);
    var pre = document.getElementById('frame'), slider = document.getElementById('slider'), label = document.getElementById('step-label');
    var show = function (i) {
      pre.textContent = '';
      var rows = typeof frames[i] === 'string' ? frames[i].split('\n') : frames[i];  // reports before 0.4 kept text frames whole
      rows.forEach(function (row, r) {
        for (var c = 0; c < row.length; c++) {
          var ch = row[c], span = document.createElement('span');
          span.textContent = ch;
          span.className = ch === '#' ? 'W' : ch;
          pre.appendChild(span);
        }
        if (r < rows.length - 1) pre.appendChild(document.createTextNode('\n'));
      });
      var text = 'step ' + i + ' / ' + (frames.length - 1);
      if (marks.scores && marks.scores[i] !== undefined) text += ' · evidence ' + marks.scores[i].toFixed(2);
      if (marks.first_flag === i) text += ' · FIRST FLAG';
      if (marks.departure === i) text += ' · DEPARTURE';
      label.textContent = text;
      pre.dataset.step = String(i);
    };
    slider.addEventListener('input', function () { show(parseInt(slider.value, 10)); });
    show(0);
  }
  var status = document.getElementById('status');
  if (status && (status.dataset.state === 'queued' || status.dataset.state === 'running') && window.EventSource) {
    var source = new EventSource('/v1/audits/' + status.dataset.audit + '/events');
    source.addEventListener('progress', function (e) {
      var d = JSON.parse(e.data);
      document.getElementById('state').textContent = d.state;
      document.getElementById('progress').value = d.progress;
      document.getElementById('stage').textContent = d.stage;
    });
    source.addEventListener('end', function () { source.close(); window.location.reload(); });
  }
})();
