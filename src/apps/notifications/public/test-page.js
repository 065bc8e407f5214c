// The SSE and SignalR test pages: one script, the transport is the body's data-transport.
/* global document, window, location, EventSource, signalR */
(() => {
  // Every notification type the server sends (contracts' NotificationEventTypes), so a new one shows here as it is.
  const TYPES = window.TBE_CONFIG.notificationTypes;
  const $ = (id) => document.getElementById(id);
  for (const type of TYPES) {
    const counter = document.createElement('div');
    counter.className = 'counter';
    const count = document.createElement('b');
    count.id = `count-${type}`;
    count.textContent = '0';
    const name = document.createElement('span');
    name.textContent = type;
    counter.append(count, name);
    $('counters').insertBefore(counter, $('count-total').parentElement);
  }
  const transport = document.body.dataset.transport;
  const apiUrl =
    new URLSearchParams(location.search).get('api') ||
    `${location.protocol}//${location.hostname}:${window.TBE_CONFIG.apiPort}`;
  $('api-url').textContent = apiUrl;
  const counts = Object.fromEntries([...TYPES, 'total'].map((type) => [type, 0]));
  // The student the Update and Delete buttons act on: the last one written here or seen in a notification.
  let lastStudent;
  let source;
  let hub;
  // SignalR only: the student whose group (`student:<id>`) the page follows instead of `Students`.
  let followed;
  // With auth on, a token goes to the stream (query: EventSource cannot set headers), the hub and the API.
  // Kept per API origin: the token typed for one API must not go, unasked, to another that a link's `?api=` names
  // (a page opened from `?api=https://elsewhere` in this tab would send it there with the first Create).
  let apiOrigin = apiUrl;
  try {
    apiOrigin = new URL(apiUrl).origin;
  } catch {
    // not a URL: every request fails, and the key is still this value's own
  }
  const TOKEN_KEY = `tbe.token ${apiOrigin}`;
  $('token').value = sessionStorage.getItem(TOKEN_KEY) ?? '';
  $('token').onchange = () => sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
  const token = () => $('token').value.trim();

  // While the client reconnects by itself, Connect would open a second connection beside it (every event twice)
  // and Disconnect must still be able to stop it.
  function setStatus(connected, text, reconnecting = false) {
    $('status').textContent = text;
    $('status').className = `status ${connected ? 'on' : 'off'}`;
    $('connect').disabled = connected || reconnecting;
    $('disconnect').disabled = !connected && !reconnecting;
  }

  function setLastStudent(student) {
    lastStudent = student;
    $('student-id').textContent = student?.id ?? '–';
    $('update').disabled = $('delete').disabled = !student;
    $('follow').disabled = !hub || (!student && !followed);
  }

  /** Back to the group every connection starts in; the server forgot any other when the connection is new. */
  function followEveryStudent() {
    followed = undefined;
    $('follow').textContent = 'Follow only the last one';
    setLastStudent(lastStudent);
  }

  function show(type, payload, id) {
    const student = payload.student;
    const same = student && student.id === lastStudent?.id;
    if (type === 'StudentDeleted') {
      if (same) setLastStudent(undefined);
      // Following a student that is gone would hide every later notification (a student created next included).
      if (followed && student.id === followed) $('follow').click();
    } else if (student && !(same && student.version < lastStudent.version)) setLastStudent(student);
    counts[type]++;
    counts.total++;
    $(`count-${type}`).textContent = counts[type];
    $('count-total').textContent = counts.total;
    const item = document.createElement('li');
    item.dataset.type = type;
    item.dataset.studentId = payload.student?.id ?? '';
    const head = document.createElement('div');
    const name = document.createElement('span');
    name.className = 'type';
    name.textContent = type;
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = `${new Date().toLocaleTimeString()}${id ? ` · id ${id}` : ''}`;
    head.append(name, meta);
    const body = document.createElement('pre');
    body.textContent = JSON.stringify(payload, null, 2);
    item.append(head, body);
    $('events').prepend(item);
  }

  // The id of the last event received (`connected` carries one too): Connect after Disconnect resumes there (an
  // EventSource sends it only when it reconnects by itself).
  let lastEventId = '';
  // What a `reset` (SSE) or `Reset` (hub) says: notifications were missed, so what the page shows may be stale.
  const MISSED = 'Missed notifications: fetch what you show again from the API.';

  /** A gap in the list itself, between the events before and after it (it outlives the next message in #log). */
  function showGap(text) {
    $('log').textContent = MISSED;
    const item = document.createElement('li');
    item.className = 'gap';
    item.dataset.type = 'gap';
    item.textContent = `⚠ ${text} (${new Date().toLocaleTimeString()})`;
    $('events').prepend(item);
    return item;
  }

  function connectSse() {
    const query = new URLSearchParams();
    if (token()) query.set('access_token', token());
    if (lastEventId) query.set('lastEventId', lastEventId);
    const url = `/api/notifications/stream${query.toString() ? `?${query}` : ''}`;
    const stream = new EventSource(url);
    source = stream;
    source.addEventListener('connected', (event) => {
      lastEventId = event.lastEventId;
      $('client-id').textContent = JSON.parse(event.data).clientId;
      setStatus(true, 'connected');
    });
    source.addEventListener('reset', (event) => {
      lastEventId = event.lastEventId;
      showGap(`Missed notifications here: ${JSON.parse(event.data).reason}.`);
    });
    for (const type of TYPES)
      source.addEventListener(type, (event) => {
        lastEventId = event.lastEventId;
        show(type, JSON.parse(event.data), event.lastEventId);
      });
    // EventSource reconnects by itself, sending Last-Event-ID.
    stream.onerror = () => {
      const closed = stream.readyState === EventSource.CLOSED;
      setStatus(false, closed ? 'disconnected' : 'reconnecting…', !closed);
      if (closed) void explainRefusal(url);
    };
  }

  /** EventSource gives up on an error status without saying which: asked again, the server says why (401, 403…). */
  async function explainRefusal(url) {
    const asking = new AbortController();
    try {
      const response = await fetch(url, { signal: asking.signal, headers: { accept: 'text/event-stream' } });
      if (response.ok) return;
      const problem = await response.json().catch(() => ({}));
      $('log').textContent =
        `stream → ${response.status} ${[problem.title, problem.detail].filter(Boolean).join(': ')}`;
    } catch {
      // The server is unreachable: the status says so already.
    } finally {
      // A stream that opens this time is not kept: Connect opens one.
      asking.abort();
    }
  }

  let hadConnection = false;
  async function connectSignalR() {
    const connection = new signalR.HubConnectionBuilder()
      .withUrl('/hubs/notifications', token() ? { accessTokenFactory: token } : {})
      // Its default gives up after four tries, the last 30 s after the third: a server back after 12 s waited 30 s
      // more, and a restart longer than 42 s left the page disconnected. At once, then every 1, 2, 4 and 5 s.
      .withAutomaticReconnect({
        nextRetryDelayInMilliseconds: ({ previousRetryCount }) =>
          previousRetryCount === 0 ? 0 : Math.min(1_000 * 2 ** (previousRetryCount - 1), 5_000),
      })
      // A dropped connection first tries to come back as the same connection, and then the hub resends what it
      // missed; when that fails, automatic reconnect makes a new one, which starts from now (onreconnected).
      .withStatefulReconnect()
      .build();
    hub = connection;
    hub.on('Connected', (message) => ($('client-id').textContent = message.clientId));
    hub.on('Reset', ({ reason }) => showGap(`Missed notifications here: ${reason}.`));
    for (const type of TYPES) hub.on(type, (payload) => show(type, payload));
    hub.onreconnecting(() => setStatus(false, 'reconnecting…', true));
    // Only a new connection reports `reconnected` (a stateful reconnect is silent): what was sent meanwhile is lost.
    hub.onreconnected(() => {
      followEveryStudent();
      setStatus(true, 'connected');
      showGap('Reconnected as a new connection: notifications sent while disconnected are not shown.');
    });
    // Automatic reconnect gave up (or Disconnect stopped it): nothing can be sent until Connect makes a new one.
    hub.onclose((error) => {
      if (hub === connection) hub = undefined;
      setStatus(false, 'disconnected');
      followEveryStudent();
      if (error) $('log').textContent = `Connection lost (${error.message}); press Connect to try again.`;
    });
    // Shown before it starts: whatever the new connection receives is listed above it.
    const gap =
      hadConnection && showGap('New connection: notifications sent while disconnected are not shown.');
    try {
      await connection.start();
    } catch (error) {
      if (gap) gap.remove();
      if (hub === connection) hub = undefined;
      throw error;
    }
    hadConnection = true;
    setStatus(true, 'connected');
    followEveryStudent();
  }

  $('connect').onclick = () => {
    // What an earlier attempt said (a 401, a failed negotiation) is no longer the state.
    $('log').textContent = '';
    return transport === 'sse'
      ? connectSse()
      : connectSignalR().catch((error) => ($('log').textContent = String(error)));
  };
  $('disconnect').onclick = async () => {
    if (source) source.close();
    if (hub) await hub.stop();
    source = hub = undefined;
    setStatus(false, 'disconnected');
    followEveryStudent();
  };

  async function call(method, path, body) {
    let response;
    try {
      response = await fetch(`${apiUrl}${path}`, {
        method,
        headers: {
          ...(body ? { 'content-type': 'application/json' } : {}),
          ...(token() ? { authorization: `Bearer ${token()}` } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch {
      // fetch says only "Failed to fetch", whether nothing listens there or CORS kept the answer from this page.
      throw new Error(
        `${method} ${path}: no answer from the webapi at ${apiUrl} (not running there, or its CORS_ORIGINS does not list ${location.origin})`,
      );
    }
    $('log').textContent = `${method} ${path} → ${response.status}`;
    if (response.ok) return response.status === 204 ? undefined : response.json();
    // A problem+json error says why (and which fields); it is never taken for a student.
    const problem = await response.json().catch(() => ({}));
    const fields = Array.isArray(problem.errors)
      ? problem.errors.map(({ field, reason }) => `${field} ${reason}`).join('; ')
      : '';
    throw new Error(
      `${method} ${path} → ${response.status} ${[problem.title, problem.detail, fields].filter(Boolean).join(': ')}`,
    );
  }
  const run = (action) => () => action().catch((error) => ($('log').textContent = `${error}`));
  $('create').onclick = run(async () => setLastStudent(await call('POST', '/api/students', {})));
  $('update').onclick = run(async () => {
    const { id, firstName, lastName, email } = lastStudent;
    // A change that keeps the name within its 100 characters, however often it is made: a `!` on, then off again.
    const changed = firstName.endsWith('!')
      ? firstName.slice(0, -1)
      : `${[...firstName].slice(0, 99).join('')}!`;
    setLastStudent(await call('PUT', `/api/students/${id}`, { firstName: changed, lastName, email }));
  });
  $('delete').onclick = run(async () => {
    await call('DELETE', `/api/students/${lastStudent.id}`);
    setLastStudent(undefined);
  });
  // One student's notifications only (its group), or every student's again.
  $('follow').hidden = transport !== 'signalr';
  $('follow').onclick = run(async () => {
    if (followed) {
      await hub.invoke('JoinGroup', 'Students');
      await hub.invoke('LeaveGroup', `student:${followed}`);
      followEveryStudent();
      $('log').textContent = 'following every student';
    } else {
      const id = lastStudent.id;
      await hub.invoke('JoinGroup', `student:${id}`);
      await hub.invoke('LeaveGroup', 'Students');
      // Set once the hub has taken both. A call fails only when the connection is lost, and a new connection starts
      // in the group of every student, which is what the page then says.
      followed = id;
      $('follow').textContent = 'Follow all students';
      $('log').textContent = `following only ${followed}`;
    }
  });

  if (transport === 'sse') connectSse();
  else $('connect').click();
})();
