// Berth console: a framework-free front end over the public management API
// (/api/v1/). It can do nothing the signed-in token cannot: every change is
// an API call, and the buttons for changes the token may not make are left
// out (the API refuses them anyway). No markup is parsed: every element
// is built with the DOM, so names from the registry are text, never markup.

const API = '/api/v1';
const TOKEN_KEY = 'berth.console.token';
const state = { token: sessionStorage.getItem(TOKEN_KEY), me: null, timers: [], gen: 0 };

// ---------------------------------------------------------------- helpers

/** An element: attributes (on* are listeners), then children (text or nodes). */
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'value' || k === 'checked' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of kids.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Append children (nested arrays flattened, null and false left out). */
function add(el, ...kids) {
  el.append(...kids.flat(Infinity).filter((k) => k != null && k !== false));
}

/** Replace an element's children (nested arrays flattened, null and false left out). */
function fill(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k != null && k !== false));
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of kids.flat()) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}

const enc = encodeURIComponent;

export function bytes(n) {
  if (n == null) return '—';
  // decimal, as storage limits are typed (1 GB = 10^9 bytes)
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = Number(n), i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + ' ' + units[i];
}

function when(iso) {
  if (!iso) return h('span', { class: 'muted' }, 'never');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, isNaN(d) ? iso : d.toLocaleString());
}

function shortDigest(d) {
  const [alg, hex] = String(d).split(':');
  return hex ? `${alg}:${hex.slice(0, 12)}` : String(d);
}

const KIND_LABEL = { image: 'image', helm_chart: 'Helm chart', artifact: 'artifact' };
function kindBadge(kind) {
  return h('span', { class: `badge ${kind}` }, KIND_LABEL[kind] || kind);
}

function platformText(p) {
  return p ? `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}` : '';
}

/** A datetime-local value (local time) as RFC 3339 UTC, or null when empty. */
function isoFromLocal(v) {
  if (!v) return null;
  const d = new Date(v);
  return isNaN(d) ? null : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Decimal storage sizes typed in a form: number and unit. */
const SIZE_UNITS = [['MB', 1e6], ['GB', 1e9], ['TB', 1e12], ['MiB', 2 ** 20], ['GiB', 2 ** 30], ['TiB', 2 ** 40]];

function sizeInput(id, current) {
  let unit = 'GB', num = '';
  if (current != null) {
    const exact = SIZE_UNITS.slice().reverse().find(([, m]) => current % m === 0);
    if (exact) { unit = exact[0]; num = String(current / exact[1]); } else { unit = 'MB'; num = String(current / 1e6); }
  }
  const input = h('input', { type: 'number', id, min: '0', step: 'any', value: num, placeholder: 'no limit', 'aria-describedby': id + '-hint' });
  const select = h('select', { id: id + '-unit', 'aria-label': 'unit' },
    SIZE_UNITS.map(([u]) => h('option', { value: u, selected: u === unit }, u)));
  return {
    el: h('div', { class: 'form-row' }, h('div', { class: 'field' }, input), h('div', { class: 'field' }, select)),
    value() {
      if (input.value.trim() === '') return null;
      const n = Number(input.value);
      if (!Number.isFinite(n) || n < 0) throw new Error('The storage limit must be a positive number, or empty for no limit.');
      return Math.round(n * SIZE_UNITS.find(([u]) => u === select.value)[1]);
    },
  };
}

// ------------------------------------------------------------------ notices

let noticeTimer = null;
function notify(text, isError) {
  const n = document.getElementById('notice');
  n.textContent = text;
  n.className = isError ? 'notice error' : 'notice';
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.hidden = true; }, isError ? 12000 : 5000);
}

function errorBox(e) {
  return h('div', { class: 'error-box', role: 'alert' }, messageOf(e));
}

function messageOf(e) {
  return e instanceof ApiError ? e.message : `Something went wrong in the console: ${e && e.message ? e.message : e}`;
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const t = h('textarea', { class: 'visually-hidden' }, text);
    document.body.append(t);
    t.select();
    document.execCommand('copy');
    t.remove();
  }
  notify('Copied to the clipboard.');
}

function copyLine(text, label) {
  return h('div', { class: 'copy' },
    h('code', { 'aria-label': label || 'command' }, text),
    h('button', { type: 'button', class: 'small', onclick: () => copy(text), 'aria-label': `Copy ${label || 'command'}` }, 'Copy'));
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type: type || 'application/json' }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// --------------------------------------------------------------------- API

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

const PLAIN = {
  unauthorized: 'The token was not accepted. Check it and sign in again.',
  forbidden: 'This token is not allowed to do that.',
  not_found: 'That no longer exists (or this token cannot see it).',
  too_many_requests: 'Too many failed sign-ins from here. Wait a minute and try again.',
  unavailable: 'The server is busy right now. Try again in a moment.',
  too_large: 'That request is too large.',
};

function explain(status, body) {
  const detail = body && typeof body.detail === 'string' ? body.detail : '';
  const code = body && body.code;
  const plain = PLAIN[code];
  if (plain && detail) return `${plain} (${detail})`;
  if (plain) return plain;
  if (detail) return detail.charAt(0).toUpperCase() + detail.slice(1);
  if (status >= 500) return `The server failed (HTTP ${status}). Try again; if it keeps failing, check the server's log.`;
  return `The request failed (HTTP ${status}).`;
}

export async function api(method, path, body) {
  const url = path.startsWith(API) ? path : API + path;
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(url, init);
  } catch {
    throw new ApiError(0, 'network', 'The server could not be reached. Check that Berth is running and try again.');
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) {
    const err = new ApiError(r.status, (data && data.code) || `http_${r.status}`, explain(r.status, data));
    if (r.status === 401 && state.me) signOut(err.message);
    throw err;
  }
  return data;
}

const get = (p) => api('GET', p);

// -------------------------------------------------------------- permissions

const may = {
  write: () => !!(state.me && state.me.readWrite),
  admin: () => !!(state.me && state.me.kind === 'admin'),
  instance: () => !!(state.me && state.me.mayCreateRegistries),
};

function whenWritable(...els) {
  return may.write() ? els : [];
}

// ------------------------------------------------------------------ dialogs

/** A modal dialog; resolves with the value of the button that closed it. */
function modal(title, body, buttons) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { 'aria-labelledby': 'dlg-title' });
    const form = h('form', { method: 'dialog' },
      h('h2', { id: 'dlg-title' }, title), body,
      h('div', { class: 'actions' }, buttons.map((b) => h('button', { value: b.value, class: b.class || '', type: 'submit', disabled: b.disabled }, b.label))));
    add(dlg, form);
    dlg.addEventListener('close', () => { resolve(dlg.returnValue); dlg.remove(); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

async function confirmAction(title, text, label = 'Delete') {
  const v = await modal(title, h('p', {}, text), [
    { value: 'cancel', label: 'Cancel' },
    { value: 'ok', label, class: 'danger' },
  ]);
  return v === 'ok';
}

/** A confirmation that takes typing `word` (a registry's name) first. */
function confirmTyped(title, text, word) {
  return new Promise((resolve) => {
    const input = h('input', { type: 'text', id: 'dlg-typed', autocomplete: 'off', spellcheck: 'false' });
    const ok = h('button', { type: 'submit', value: 'ok', class: 'danger', disabled: true }, 'Delete');
    input.addEventListener('input', () => { ok.disabled = input.value !== word; });
    const dlg = h('dialog', { 'aria-labelledby': 'dlg-title' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'dlg-title' }, title), h('p', {}, text),
        h('div', { class: 'field' }, h('label', { for: 'dlg-typed' }, `Type “${word}” to confirm`), input),
        h('div', { class: 'actions' }, h('button', { type: 'submit', value: 'cancel' }, 'Cancel'), ok)));
    dlg.addEventListener('close', () => { resolve(dlg.returnValue === 'ok' && input.value === word); dlg.remove(); });
    document.body.append(dlg);
    dlg.showModal();
    input.focus();
  });
}

/** Shows a secret once (a password or a token) with what to do with it. */
function showSecret(title, parts) {
  return modal(title, h('div', {},
    h('p', {}, 'This is shown once. Copy it now: it cannot be read again (reset or regenerate it to get a new one).'),
    parts), [{ value: 'ok', label: 'Done', class: 'primary' }]);
}

// ------------------------------------------------------------------- tables

/**
 * A table of `rows`. `columns`: {label, num, cell(row)}. With `actions`
 * (group actions: {label, danger, run(rows)}) each row gets a checkbox and
 * the actions act on the checked rows.
 */
function dataTable({ columns, rows, caption, actions, empty, rowClass }) {
  if (!rows.length) return h('p', { class: 'empty' }, empty || 'Nothing here yet.');
  const selectable = actions && actions.length > 0;
  const checked = new Set();
  const boxes = [];
  const bar = selectable ? h('div', { class: 'actions', role: 'group', 'aria-label': 'Actions on the selected rows' }) : null;
  const refreshBar = () => {
    if (!bar) return;
    fill(bar, h('span', { class: 'muted' }, `${checked.size} selected`),
      actions.map((a) => h('button', {
        type: 'button', class: a.danger ? 'danger small' : 'small', disabled: checked.size === 0,
        onclick: async () => {
          const picked = rows.filter((_, i) => checked.has(i));
          if (picked.length) await a.run(picked);
        },
      }, `${a.label} (${checked.size})`)));
  };
  const all = selectable ? h('input', {
    type: 'checkbox', 'aria-label': 'Select all rows',
    onchange: (ev) => {
      boxes.forEach((b, i) => { b.checked = ev.target.checked; if (b.checked) checked.add(i); else checked.delete(i); });
      refreshBar();
    },
  }) : null;
  const head = h('tr', {}, selectable ? h('th', { class: 'check', scope: 'col' }, all) : null,
    columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : '' }, c.label)));
  const body = rows.map((row, i) => {
    let box = null;
    if (selectable) {
      box = h('input', {
        type: 'checkbox', 'aria-label': `Select row ${i + 1}`,
        onchange: () => { if (box.checked) checked.add(i); else checked.delete(i); refreshBar(); },
      });
      boxes.push(box);
    }
    return h('tr', { class: rowClass ? rowClass(row) : '' }, selectable ? h('td', { class: 'check' }, box) : null,
      columns.map((c) => h('td', { class: c.num ? 'num' : '' }, c.cell(row))));
  });
  refreshBar();
  return h('div', {}, bar,
    h('div', { class: 'table-wrap' }, h('table', {}, caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
      h('thead', {}, head), h('tbody', {}, body))));
}

/**
 * A paged list in `container`: loads `firstUrl`, renders each page with
 * `renderPage(page, reload)`, and follows the API's `next` links (keeping
 * the ones before for Previous).
 */
function paged(container, firstUrl, renderPage) {
  const stack = [];
  let current = firstUrl;
  async function load(url) {
    container.setAttribute('aria-busy', 'true');
    try {
      const page = await get(url);
      current = url;
      const pager = (stack.length || page.next) ? h('div', { class: 'pager' },
        h('button', { type: 'button', disabled: stack.length === 0, onclick: () => load(stack.pop()) }, 'Previous'),
        h('span', { class: 'muted' }, `Page ${stack.length + 1}`),
        h('button', { type: 'button', disabled: !page.next, onclick: () => { stack.push(current); load(page.next); } }, 'Next')) : null;
      fill(container, renderPage(page, () => load(current)), pager);
    } catch (e) {
      fill(container, errorBox(e));
    } finally {
      container.removeAttribute('aria-busy');
    }
  }
  load(firstUrl);
  return { reload: () => load(current), reset: (url) => { stack.length = 0; load(url); } };
}

/** A loader: fills `el` with `render(page)` of `url`, or with the error. */
function loaderInto(el, url, render) {
  return async () => {
    try {
      fill(el, render(await get(url)));
    } catch (e) {
      fill(el, errorBox(e));
    }
  };
}

/** A repository pattern, or “all” when a rule or policy has none. */
function patternCell(x) {
  return x.repositoryPattern ? h('code', {}, x.repositoryPattern) : h('span', { class: 'muted' }, 'all');
}

/** Runs `fn` over items one by one; reports how many failed and why. */
async function eachOf(items, what, fn) {
  const failed = [];
  for (const it of items) {
    try { await fn(it); } catch (e) { failed.push(messageOf(e)); }
  }
  if (failed.length) notify(`${items.length - failed.length} of ${items.length} ${what} done; failed: ${failed.join('; ')}`, true);
  else notify(`${items.length} ${what} done.`);
}

/** A text input that calls `onchange(value)` a moment after typing stops. */
function searchBox(id, label, onchange, value) {
  const input = h('input', { type: 'search', id, value: value || '', autocomplete: 'off' });
  let t = null;
  input.addEventListener('input', () => { clearTimeout(t); t = setTimeout(() => onchange(input.value.trim()), 250); });
  return h('div', { class: 'field grow' }, h('label', { for: id }, label), input);
}

function selectBox(id, label, options, onchange, value) {
  const s = h('select', { id, onchange: () => onchange(s.value) },
    options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
  return h('div', { class: 'field' }, h('label', { for: id }, label), s);
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** A form: fields, a submit button; `onsubmit` gets the form, errors are shown in it. */
function form(title, fields, submitLabel, onsubmit, extraClass) {
  const err = h('div', { 'aria-live': 'assertive' });
  const button = h('button', { type: 'submit', class: 'primary' }, submitLabel);
  const f = h('form', { class: `form ${extraClass || ''}`, novalidate: true, 'aria-label': title },
    title ? h('h3', {}, title) : null, fields, err, h('div', { class: 'actions' }, button));
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    fill(err);
    button.disabled = true;
    try { await onsubmit(f); } catch (e) { fill(err, errorBox(e)); } finally { button.disabled = false; }
  });
  return f;
}

function field(id, label, input, hint) {
  input.id = id;
  if (hint) input.setAttribute('aria-describedby', `${id}-hint`);
  return h('div', { class: 'field' }, h('label', { for: id }, label), input,
    hint ? h('div', { class: 'hint', id: `${id}-hint` }, hint) : null);
}

function checkField(id, label, checked) {
  return h('div', { class: 'field' }, h('label', { class: 'inline', for: id }, h('input', { type: 'checkbox', id, checked: !!checked }), label));
}

function cards(items) {
  return h('div', { class: 'cards' }, items.filter(Boolean).map(([k, v]) => h('div', { class: 'card' }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, v))));
}

function usageCell(r) {
  const used = r.bytesUsed;
  if (r.storageLimitBytes == null) return h('span', {}, `${bytes(used)} `, h('span', { class: 'muted' }, '(no limit)'));
  const pct = r.usedPercent == null ? 0 : r.usedPercent;
  return h('div', { class: 'usage' },
    h('meter', { min: '0', max: String(r.storageLimitBytes), low: String(r.storageLimitBytes * 0.8), high: String(r.storageLimitBytes * 0.95), optimum: '0', value: String(Math.min(used, r.storageLimitBytes)), 'aria-label': `storage used: ${pct.toFixed(1)}%` }),
    h('span', {}, `${bytes(used)} of ${bytes(r.storageLimitBytes)} (${pct.toFixed(1)}%)`));
}

// ------------------------------------------------------------ the frame

function every(ms, fn) {
  const t = setInterval(fn, ms);
  state.timers.push(t);
}

function title(view, text, crumbs) {
  document.title = `${text} · Berth console`;
  add(view, 
    crumbs ? h('p', { class: 'crumbs' }, crumbs.flatMap(([label, href], i) => [i ? ' / ' : '', h('a', { href }, label)])) : null,
    h('h1', {}, text));
}

function signOut(message) {
  state.token = null;
  state.me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  state.signOutMessage = message || null;
  if (location.hash !== '#/login') location.hash = '#/login';
  else render();
}

function updateFrame() {
  const me = state.me;
  document.getElementById('nav').hidden = !me;
  document.getElementById('who').hidden = !me;
  if (!me) return;
  const label = me.kind === 'admin' ? 'admin' : `token “${me.tokenName || me.tokenId}”`;
  const mode = me.readWrite ? 'read-write' : 'read-only';
  const scope = me.registries ? ` · ${me.registries.join(', ')}` : '';
  document.getElementById('who-label').textContent = `Signed in as ${label} (${mode}${scope})`;
  for (const a of document.querySelectorAll('#nav a')) {
    const section = a.dataset.section;
    a.hidden = (section === 'tokens' || section === 'gc') && !may.instance();
    if (location.hash.startsWith(`#/${section}`)) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

const ROUTES = [];
function route(re, page) { ROUTES.push([re, page]); }

async function render() {
  state.gen += 1;
  state.timers.forEach(clearInterval);
  state.timers = [];
  const main = document.getElementById('main');
  const hash = location.hash || '#/registries';
  if (!state.token) {
    updateFrame();
    const view = h('div');
    fill(main, view);
    loginPage(view);
    return;
  }
  if (!state.me) {
    try {
      state.me = await get('/session');
    } catch (e) {
      if (e.status === 401) { signOut(e.message); return; }
      fill(main, errorBox(e), h('button', { type: 'button', onclick: render }, 'Try again'));
      return;
    }
  }
  if (hash === '#/login' || hash === '#/' || hash === '#') { location.replace('#/registries'); return; }
  updateFrame();
  for (const [re, page] of ROUTES) {
    const m = hash.match(re);
    if (!m) continue;
    const view = h('div');
    fill(main, view);
    try {
      await page(view, ...m.slice(1).map((s) => (s == null ? s : decodeURIComponent(s))));
    } catch (e) {
      add(view, errorBox(e));
    }
    main.focus({ preventScroll: true });
    return;
  }
  document.title = 'Not found · Berth console';
  fill(main, h('h1', {}, 'No such page'), h('p', {}, 'Nothing lives at this address. ', h('a', { href: '#/registries' }, 'Go to the registries.')));
}

// ------------------------------------------------------------------- sign-in

function loginPage(view) {
  document.title = 'Sign in · Berth console';
  const token = h('input', { type: 'password', autocomplete: 'current-password', spellcheck: 'false', required: true });
  const note = state.signOutMessage ? h('div', { class: 'error-box', role: 'alert' }, state.signOutMessage) : null;
  state.signOutMessage = null;
  add(view, h('div', { class: 'login' },
    h('h1', {}, 'Sign in to Berth'),
    note,
    form(null, [
      field('token', 'API token', token, 'The admin token Berth printed when it first started, or an API token (berth_…). The console can do only what the token may.'),
    ], 'Sign in', async () => {
      const t = token.value.trim();
      if (!t) throw new ApiError(400, 'empty', 'Paste a token first.');
      state.token = t;
      try {
        state.me = await get('/session');
      } catch (e) {
        state.token = null;
        throw e;
      }
      sessionStorage.setItem(TOKEN_KEY, t);
      if (location.hash === '#/registries') render(); else location.hash = '#/registries';
    })));
  token.focus();
}

// ---------------------------------------------------------------- registries

route(/^#\/registries$/, registriesPage);

async function registriesPage(view) {
  title(view, 'Registries');
  const params = { search: '', sort: 'name', limit: 50 };
  const list = h('div');
  const url = () => `/registries${query(params)}`;
  let pages;
  const toolbar = h('div', { class: 'toolbar' },
    searchBox('reg-search', 'Search by name', (v) => { params.search = v; pages.reset(url()); }),
    selectBox('reg-sort', 'Sort by', [['name', 'name'], ['-size', 'storage used'], ['-created', 'newest first'], ['created', 'oldest first']],
      (v) => { params.sort = v; pages.reset(url()); }, params.sort));
  const create = may.instance() && may.write() ? createRegistryForm() : null;
  add(view, toolbar, create, list);
  pages = paged(list, url(), (page) => h('div', {},
    h('p', { class: 'muted' }, page.total != null ? `${page.total} registr${page.total === 1 ? 'y' : 'ies'}` : ''),
    dataTable({
      caption: 'Registries',
      empty: params.search ? 'No registry matches.' : 'No registries yet.',
      rows: page.items,
      columns: [
        { label: 'Name', cell: (r) => h('a', { href: `#/registries/${enc(r.name)}` }, r.name) },
        { label: 'Visibility', cell: (r) => h('span', { class: 'badge' }, r.visibility) },
        { label: 'Repositories', num: true, cell: (r) => String(r.repositoryCount) },
        { label: 'Storage', cell: usageCell },
        { label: 'Created', cell: (r) => when(r.createdAt) },
      ],
    })));
}

function createRegistryForm() {
  const name = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', required: true });
  const hint = h('div', { class: 'hint', id: 'new-reg-name-hint', 'aria-live': 'polite' }, 'Lowercase letters, digits and separators; the first part of every repository name.');
  let check = 0;
  let t = null;
  name.addEventListener('input', () => {
    clearTimeout(t);
    const v = name.value.trim();
    t = setTimeout(async () => {
      const mine = ++check;
      if (!v) { hint.className = 'hint'; hint.textContent = ''; return; }
      try {
        const r = await get(`/registry-names/${enc(v)}`);
        if (mine !== check) return;
        hint.className = r.status === 'free' ? 'hint good' : 'hint bad';
        hint.textContent = r.status === 'free' ? `“${v}” is available.` : (r.detail || `“${v}” cannot be used.`);
      } catch (e) {
        if (mine === check) { hint.className = 'hint bad'; hint.textContent = messageOf(e); }
      }
    }, 200);
  });
  name.setAttribute('aria-describedby', 'new-reg-name-hint');
  const vis = h('select', {}, h('option', { value: 'private' }, 'private: pulls need credentials'), h('option', { value: 'public' }, 'public: anyone may pull'));
  const limit = sizeInput('new-reg-limit', null);
  const details = h('details', {}, h('summary', {}, 'Create a registry'),
    form(null, [
      h('div', { class: 'field' }, h('label', { for: 'new-reg-name' }, 'Name'), Object.assign(name, { id: 'new-reg-name' }), hint),
      field('new-reg-vis', 'Visibility', vis),
      h('div', { class: 'field' }, h('label', { for: 'new-reg-limit' }, 'Storage limit'), limit.el),
    ], 'Create registry', async () => {
      const r = await api('POST', '/registries', { name: name.value.trim(), visibility: vis.value, storageLimitBytes: limit.value() });
      notify(`Registry “${r.name}” created.`);
      location.hash = `#/registries/${enc(r.name)}`;
    }));
  return details;
}

// --------------------------------------------------------- one registry

const TABS = [
  ['images', 'Images'], ['users', 'Users'], ['rules', 'Tag rules'], ['cleanup', 'Cleanup policies'],
  ['bin', 'Recycle bin'], ['gc', 'Garbage collection'], ['usage', 'Storage over time'], ['settings', 'Settings'],
];

route(/^#\/registries\/([^/]+)(?:\/(images|users|rules|cleanup|bin|gc|usage|settings))?$/, registryPage);

async function registryPage(view, name, tab) {
  tab = tab || 'images';
  const reg = await get(`/registries/${enc(name)}`);
  title(view, reg.name, [['Registries', '#/registries']]);
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Registry sections' },
    TABS.filter(([t]) => t !== 'settings' || may.write())
      .map(([t, label]) => h('a', { href: `#/registries/${enc(name)}/${t}`, 'aria-current': t === tab ? 'page' : null }, label)));
  const host = reg.pushPrefix.split('/')[0];
  add(view, 
    cards([
      ['Storage used', usageCell(reg)],
      ['Repositories', String(reg.repositoryCount)],
      ['In the recycle bin', bytes(reg.recycleBinBytes)],
      ['Visibility', reg.visibility],
    ]),
    h('div', {}, h('span', { class: 'muted' }, 'Push to this registry:'), copyLine(`docker push ${reg.pushPrefix}/IMAGE:TAG`, 'push command'),
      h('span', { class: 'muted' }, 'Sign in with a user of the registry:'), copyLine(`docker login ${host}`, 'login command')),
    tabs);
  const body = h('section', { 'aria-label': TABS.find(([t]) => t === tab)[1] });
  add(view, body);
  const pages = { images: imagesTab, users: usersTab, rules: rulesTab, cleanup: cleanupTab, bin: binTab, gc: registryGcTab, usage: usageTab, settings: settingsTab };
  await pages[tab](body, reg);
}

async function imagesTab(view, reg) {
  const params = { search: '', sort: 'name', limit: 50 };
  const base = `/registries/${enc(reg.name)}/repositories`;
  const url = () => `${base}${query(params)}`;
  const list = h('div');
  let pages;
  add(view, h('div', { class: 'toolbar' },
    searchBox('repo-search', 'Search images', (v) => { params.search = v; pages.reset(url()); }),
    selectBox('repo-sort', 'Sort by', [['name', 'name'], ['-updated', 'last modified'], ['-size', 'size'], ['updated', 'least recently modified']],
      (v) => { params.sort = v; pages.reset(url()); }, params.sort)), list);
  pages = paged(list, url(), (page, reload) => h('div', {},
    h('p', { class: 'muted' }, `${page.filtered != null ? page.filtered : page.items.length} of ${page.total} repositories`),
    dataTable({
      caption: 'Images',
      empty: params.search ? 'No repository matches.' : `No images yet. Push one: docker push ${reg.pushPrefix}/IMAGE:TAG`,
      rows: page.items,
      columns: [
        { label: 'Name', cell: (r) => h('a', { href: `#/registries/${enc(reg.name)}/repositories/${enc(r.name)}` }, r.name) },
        { label: 'Kind', cell: (r) => kindBadge(r.kind) },
        { label: 'Artifacts', num: true, cell: (r) => String(r.artifactCount) },
        { label: 'Tags', num: true, cell: (r) => String(r.tagCount) },
        { label: 'Pulls', num: true, cell: (r) => String(r.pullCount) },
        { label: 'Size', num: true, cell: (r) => bytes(r.sizeBytes) },
        { label: 'Last modified', cell: (r) => when(r.updatedAt) },
        { label: 'Last pulled', cell: (r) => when(r.lastPulledAt) },
        ...whenWritable({
          label: 'Actions',
          cell: (r) => h('button', {
            type: 'button', class: 'small danger', 'aria-label': `Delete ${r.name}`,
            onclick: async () => {
              if (!await confirmAction(`Delete ${r.fullName}?`, `Every tag and manifest of ${r.fullName} is deleted at once (not kept in the recycle bin); its blobs are freed by the next garbage collection.`)) return;
              await eachOf([r], 'repository deleted', (x) => api('DELETE', `${base}/${enc(x.name)}`));
              reload();
            },
          }, 'Delete'),
        }),
      ],
      actions: may.write() ? [{
        label: 'Delete selected', danger: true,
        run: async (rows) => {
          if (!await confirmAction(`Delete ${rows.length} repositories?`, `${rows.map((r) => r.name).join(', ')}: every tag and manifest is deleted at once (not kept in the recycle bin).`)) return;
          await eachOf(rows, 'repositories deleted', (x) => api('DELETE', `${base}/${enc(x.name)}`));
          reload();
        },
      }] : null,
    })));
}

// ------------------------------------------------------------------- users

function passwordDialog(reg, user) {
  const host = reg.pushPrefix.split('/')[0];
  return showSecret(`Password of ${user.username}`, [
    h('p', {}, 'Password:'), copyLine(user.password, 'password'),
    h('p', {}, 'Sign in with it:'), copyLine(`docker login ${host} -u ${user.username}`, 'docker login command'),
    h('p', { class: 'muted' }, user.canPush ? 'This user may push and pull.' : 'This user may only pull.'),
  ]);
}

async function usersTab(view, reg) {
  const base = `/registries/${enc(reg.name)}/users`;
  const params = { search: '', sort: 'name' };
  const list = h('div');
  let pages;
  const url = () => `${base}${query(params)}`;
  if (may.write()) {
    const name = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
    const expires = h('input', { type: 'datetime-local' });
    add(view, h('details', {}, h('summary', {}, 'Create a user'), form(null, [
      field('new-user-name', 'Name', name, `Signs in as ${reg.name}+NAME.`),
      checkField('new-user-push', 'May push (otherwise pull only)', false),
      field('new-user-expires', 'Expires (optional)', expires),
    ], 'Create user', async (f) => {
      const u = await api('POST', base, { name: name.value.trim(), canPush: f.querySelector('#new-user-push').checked, expiresAt: isoFromLocal(expires.value) });
      name.value = '';
      pages.reload();
      await passwordDialog(reg, u);
    })));
    add(view, h('div', { class: 'actions' }, h('button', {
      type: 'button',
      onclick: async () => {
        const c = await api('POST', `/registries/${enc(reg.name)}/docker-credentials`, {});
        credentialsDialog(`Pull credentials for ${reg.name}`, c);
      },
    }, 'Kubernetes pull secret…')));
  }
  add(view, h('div', { class: 'toolbar' },
    searchBox('user-search', 'Search users', (v) => { params.search = v; pages.reset(url()); }),
    selectBox('user-sort', 'Sort by', [['name', 'name'], ['-created', 'newest first'], ['expires', 'expiring first']],
      (v) => { params.sort = v; pages.reset(url()); }, params.sort)), list);
  const act = (label, fn, cls) => h('button', { type: 'button', class: `small ${cls || ''}`, onclick: fn }, label);
  pages = paged(list, url(), (page, reload) => dataTable({
    caption: 'Users',
    empty: 'No users yet.',
    rows: page.items,
    columns: [
      { label: 'Name', cell: (u) => u.name },
      { label: 'Sign in as', cell: (u) => h('code', {}, u.username) },
      { label: 'Permissions', cell: (u) => (u.canPush ? 'push and pull' : 'pull only') },
      { label: 'Created', cell: (u) => when(u.createdAt) },
      { label: 'Expires', cell: (u) => (u.expiresAt ? h('span', {}, when(u.expiresAt), u.expired ? h('span', { class: 'badge bad' }, 'expired') : null) : h('span', { class: 'muted' }, 'never')) },
      ...whenWritable({
        label: 'Actions',
        cell: (u) => h('div', { class: 'actions' },
          act(u.canPush ? 'Make pull-only' : 'Allow push', async () => {
            try { await api('PATCH', `${base}/${enc(u.name)}`, { canPush: !u.canPush }); notify(`${u.username} changed.`); reload(); } catch (e) { notify(messageOf(e), true); }
          }),
          act('Reset password', async () => {
            if (!await confirmAction(`Reset the password of ${u.username}?`, 'The old password stops working at once.', 'Reset')) return;
            try { await passwordDialog(reg, await api('POST', `${base}/${enc(u.name)}/reset-password`)); } catch (e) { notify(messageOf(e), true); }
          }),
          act('Delete', async () => {
            if (!await confirmAction(`Delete ${u.username}?`, 'It can no longer sign in; tokens it was issued stop working.')) return;
            await eachOf([u], 'user deleted', (x) => api('DELETE', `${base}/${enc(x.name)}`));
            reload();
          }, 'danger')),
      }),
    ],
    actions: may.write() ? [{
      label: 'Delete selected', danger: true,
      run: async (rows) => {
        if (!await confirmAction(`Delete ${rows.length} users?`, rows.map((u) => u.username).join(', '))) return;
        await eachOf(rows, 'users deleted', (x) => api('DELETE', `${base}/${enc(x.name)}`));
        reload();
      },
    }] : null,
  }));
}

function credentialsDialog(heading, t) {
  const config = JSON.stringify(t.dockerConfig, null, 2);
  return showSecret(heading, [
    h('p', {}, `Token “${t.name}” (${t.readWrite ? 'read-write' : 'read-only'}${t.registries ? ', ' + t.registries.join(', ') : ', every registry'}):`),
    copyLine(t.secret, 'token secret'),
    h('p', {}, 'As a Kubernetes image pull secret:'),
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => download('config.json', config) }, 'Download .dockerconfigjson')),
    copyLine('kubectl create secret generic regcred --from-file=.dockerconfigjson=config.json --type=kubernetes.io/dockerconfigjson', 'kubectl command'),
    h('p', { class: 'muted' }, 'Or with skopeo / podman: --authfile config.json'),
  ]);
}

// --------------------------------------------------------------- tag rules

async function rulesTab(view, reg) {
  const base = `/registries/${enc(reg.name)}/tag-rules`;
  add(view, h('p', { class: 'muted' }, 'A protected tag is created, moved or deleted only by the admin. An immutable tag is created once and never moved or deleted while its rule stands. Patterns are regular expressions matched against the whole name.'));
  const list = h('div');
  const load = loaderInto(list, base, (rules) => dataTable({
    caption: 'Tag rules',
    empty: 'No tag rules.',
    rows: rules.items,
    columns: [
      { label: 'Kind', cell: (r) => h('span', { class: 'badge' }, r.kind) },
      { label: 'Tags', cell: (r) => h('code', {}, r.tagPattern) },
      { label: 'Repositories', cell: patternCell },
      { label: 'Created', cell: (r) => h('span', {}, when(r.createdAt), ` by ${r.createdBy}`) },
      ...(may.admin() ? [{
        label: 'Actions',
        cell: (r) => h('button', {
          type: 'button', class: 'small danger',
          onclick: async () => {
            if (!await confirmAction('Remove this rule?', `The ${r.kind} rule on ${r.tagPattern} stops applying at once.`, 'Remove')) return;
            await eachOf([r], 'rule removed', (x) => api('DELETE', `${base}/${enc(x.id)}`));
            load();
          },
        }, 'Remove'),
      }] : []),
    ],
  }));
  if (may.admin()) {
    const kind = h('select', {}, h('option', { value: 'protected' }, 'protected'), h('option', { value: 'immutable' }, 'immutable'));
    const tagPattern = h('input', { type: 'text', spellcheck: 'false', placeholder: 'v[0-9]+(\\.[0-9]+)*' });
    const repoPattern = h('input', { type: 'text', spellcheck: 'false', placeholder: 'all repositories' });
    add(view, h('details', {}, h('summary', {}, 'Add a rule'), form(null, [
      field('rule-kind', 'Kind', kind), field('rule-tags', 'Tag pattern', tagPattern), field('rule-repos', 'Repository pattern (optional)', repoPattern),
    ], 'Add rule', async () => {
      await api('POST', base, { kind: kind.value, tagPattern: tagPattern.value, repositoryPattern: repoPattern.value.trim() || null });
      tagPattern.value = ''; repoPattern.value = '';
      notify('Rule added.');
      load();
    })));
  }
  add(view, list);
  await load();
}

// --------------------------------------------------------- cleanup policies

function plannedTable(report) {
  return h('div', {},
    h('p', {}, `${report.repositories} repositories, ${report.tagsSeen} tags looked at; ${report.planned.length} tags ${report.deleted ? `planned, ${report.deleted} deleted` : 'would go'}${report.skipped ? `, ${report.skipped} skipped` : ''}.`),
    report.errors && report.errors.length ? h('div', { class: 'error-box' }, report.errors.join('; ')) : null,
    dataTable({
      caption: 'Tags the policy deletes',
      empty: 'No tag matches: nothing would be deleted.',
      rows: report.planned,
      columns: [
        { label: 'Repository', cell: (d) => d.repository },
        { label: 'Tag', cell: (d) => h('code', {}, d.tag) },
        { label: 'Digest', cell: (d) => h('code', { title: d.digest }, shortDigest(d.digest)) },
      ],
    }));
}

/** Polls a run (a cleanup run or a GC run) until it ends; `show` renders each state. */
function follow(url, show) {
  const tick = async () => {
    try {
      const run = await get(url);
      show(run);
      return run.status !== 'running';
    } catch (e) {
      show(null, e);
      return true;
    }
  };
  return new Promise((resolve) => {
    const gen = state.gen;
    const loop = async () => {
      if (gen !== state.gen) return resolve();
      if (await tick()) return resolve();
      setTimeout(loop, 700);
    };
    loop();
  });
}

async function cleanupTab(view, reg) {
  const base = `/registries/${enc(reg.name)}/cleanup-policies`;
  const list = h('div');
  const runs = h('div');
  const result = h('div', { 'aria-live': 'polite' });
  add(view, h('p', { class: 'muted' }, 'Per repository, the tags matching “delete” may go, less those matching “keep”, the newest N and those younger than the age; never latest, never a protected or immutable tag. Run one as a dry run to see exactly which tags it would delete.'));
  const run = async (p, dryRun) => {
    if (!dryRun && !await confirmAction('Run this policy now?', 'The tags it plans are deleted into the recycle bin.', 'Run')) return;
    try {
      const r = await api('POST', `${base}/${enc(p.id)}/run`, { dryRun });
      fill(result, h('p', {}, dryRun ? 'Dry run…' : 'Running…'));
      await follow(`/registries/${enc(reg.name)}/cleanup-runs/${enc(r.id)}`, (x, e) => {
        if (e) { fill(result, errorBox(e)); return; }
        fill(result, h('h3', {}, `${x.dryRun ? 'Dry run' : 'Run'} of policy ${x.policy}: ${x.status}`),
          x.error ? h('div', { class: 'error-box' }, x.error) : null,
          x.report ? plannedTable(x.report) : h('p', { class: 'muted' }, 'Working…'));
      });
      loadRuns();
      load();
    } catch (e) { fill(result, errorBox(e)); }
  };
  const load = loaderInto(list, base, (ps) => dataTable({
    caption: 'Cleanup policies',
    empty: 'No cleanup policies.',
    rows: ps.items,
    columns: [
      { label: 'Repositories', cell: patternCell },
      { label: 'Delete', cell: (p) => h('code', {}, p.nameRegexDelete) },
      { label: 'Keep', cell: (p) => (p.nameRegexKeep ? h('code', {}, p.nameRegexKeep) : '—') },
      { label: 'Keep newest', num: true, cell: (p) => (p.keepN == null ? '—' : String(p.keepN)) },
      { label: 'Older than', cell: (p) => p.olderThan || '—' },
      { label: 'Schedule', cell: (p) => (p.intervalSecs ? `every ${Math.round(p.intervalSecs / 3600)} h` : 'on demand') },
      { label: 'Last run', cell: (p) => when(p.lastRunAt) },
      {
        label: 'Actions',
        cell: (p) => h('div', { class: 'actions' },
          ...whenWritable(
            h('button', { type: 'button', class: 'small', onclick: () => run(p, true) }, 'Dry run'),
            h('button', { type: 'button', class: 'small', onclick: () => run(p, false) }, 'Run now'),
            h('button', {
              type: 'button', class: 'small danger',
              onclick: async () => {
                if (!await confirmAction('Delete this policy?', 'It stops running; tags it deleted stay deleted.')) return;
                await eachOf([p], 'policy deleted', (x) => api('DELETE', `${base}/${enc(x.id)}`));
                load();
              },
            }, 'Delete'))),
      },
    ],
  }));
  const loadRuns = loaderInto(runs, `/registries/${enc(reg.name)}/cleanup-runs`, (rs) => [h('h3', {}, 'Runs'), dataTable({
    caption: 'Cleanup runs',
    empty: 'No runs yet.',
    rows: rs.items,
    columns: [
      { label: 'Started', cell: (x) => when(x.startedAt) },
      { label: 'Policy', cell: (x) => h('code', {}, x.policy) },
      { label: 'Kind', cell: (x) => (x.dryRun ? 'dry run' : 'run') },
      { label: 'Status', cell: (x) => x.status },
      { label: 'Tags', num: true, cell: (x) => (x.report ? `${x.dryRun ? x.report.planned.length : x.report.deleted}` : '—') },
    ],
  })]);
  if (may.write()) {
    const f = {
      repo: h('input', { type: 'text', spellcheck: 'false', placeholder: 'all repositories' }),
      del: h('input', { type: 'text', spellcheck: 'false', placeholder: '.*' }),
      keep: h('input', { type: 'text', spellcheck: 'false' }),
      keepN: h('input', { type: 'number', min: '0', step: '1' }),
      older: h('input', { type: 'text', spellcheck: 'false', placeholder: '30d' }),
      every: h('input', { type: 'number', min: '1', step: '1', placeholder: 'on demand' }),
    };
    add(view, h('details', {}, h('summary', {}, 'Add a policy'), form(null, [
      field('pol-repo', 'Repository pattern (optional)', f.repo),
      h('div', { class: 'form-row' }, field('pol-del', 'Delete tags matching', f.del), field('pol-keep', 'Keep tags matching (optional)', f.keep)),
      h('div', { class: 'form-row' }, field('pol-keepn', 'Keep the newest N', f.keepN), field('pol-older', 'Only older than', f.older, '30s, 15min, 12h, 7d, 2w, 1month, 1y')),
      field('pol-every', 'Run every N hours (optional)', f.every),
    ], 'Add policy', async () => {
      const num = (el) => (el.value === '' ? null : Number(el.value));
      const hours = num(f.every);
      await api('POST', base, {
        repositoryPattern: f.repo.value.trim() || null, nameRegexDelete: f.del.value || '.*', nameRegexKeep: f.keep.value || null,
        keepN: num(f.keepN), olderThan: f.older.value.trim() || null, intervalSecs: hours == null ? null : Math.round(hours * 3600),
      });
      notify('Policy added.');
      load();
    })));
  }
  add(view, list, result, runs);
  await Promise.all([load(), loadRuns()]);
}

// ------------------------------------------------------------- recycle bin

async function binTab(view, reg) {
  const base = `/registries/${enc(reg.name)}/recycle-bin`;
  const list = h('div');
  add(view, h('p', { class: 'muted' }, 'Deleted manifests and tags stay here, restorable, until their retention passes and garbage collection lets them go. What the bin holds counts in the registry’s storage.'));
  if (may.write()) {
    add(view, h('div', { class: 'actions' }, h('button', {
      type: 'button', class: 'danger',
      onclick: async () => {
        if (!await confirmAction('Empty the recycle bin?', 'Everything in it is deleted for good; its storage is released.', 'Empty')) return;
        try {
          const r = await api('DELETE', base);
          notify(`Emptied: ${r.purged} entries, ${bytes(r.manifestBytes + r.linkBytes)} released.`);
        } catch (e) { notify(messageOf(e), true); }
        pages.reload();
      },
    }, 'Empty the recycle bin')));
  }
  add(view, list);
  const restore = (e) => api('POST', `${base}/${enc(e.id)}/restore`);
  const purge = (e) => api('DELETE', `${base}/${enc(e.id)}`);
  const pages = paged(list, `${base}?limit=50`, (page, reload) => h('div', {},
    h('p', { class: 'muted' }, `Holding ${bytes(page.bytes)}.`),
    dataTable({
      caption: 'Recycle bin',
      empty: 'The recycle bin is empty.',
      rows: page.items,
      columns: [
        { label: 'Kind', cell: (e) => h('span', { class: 'badge' }, e.kind) },
        { label: 'Repository', cell: (e) => e.repository },
        { label: 'Tags', cell: (e) => (e.tag ? [e.tag] : e.tags).map((t) => h('span', { class: 'badge' }, t)) },
        { label: 'Digest', cell: (e) => h('code', { title: e.digest }, shortDigest(e.digest)) },
        { label: 'Size', num: true, cell: (e) => bytes(e.size) },
        { label: 'Deleted', cell: (e) => h('span', {}, when(e.deletedAt), ` by ${e.deletedBy}`) },
        { label: 'Kept until', cell: (e) => when(e.expiresAt) },
        ...whenWritable({
          label: 'Actions',
          cell: (e) => h('div', { class: 'actions' },
            h('button', {
              type: 'button', class: 'small',
              onclick: async () => {
                try {
                  const r = await restore(e);
                  notify(`Restored ${r.repository}@${shortDigest(r.digest)}${r.restoredTags.length ? ' with ' + r.restoredTags.join(', ') : ''}${r.skippedTags.length ? '; not restored (now elsewhere): ' + r.skippedTags.join(', ') : ''}.`);
                } catch (err) { notify(messageOf(err), true); }
                reload();
              },
            }, 'Restore'),
            h('button', {
              type: 'button', class: 'small danger',
              onclick: async () => {
                if (!await confirmAction('Delete for good?', `${e.repository}@${shortDigest(e.digest)} cannot be restored afterwards.`)) return;
                await eachOf([e], 'entry deleted', purge);
                reload();
              },
            }, 'Delete for good')),
        }),
      ],
      actions: may.write() ? [
        { label: 'Restore selected', run: async (rows) => { await eachOf(rows, 'entries restored', restore); reload(); } },
        {
          label: 'Delete selected for good', danger: true,
          run: async (rows) => {
            if (!await confirmAction(`Delete ${rows.length} entries for good?`, 'They cannot be restored afterwards.')) return;
            await eachOf(rows, 'entries deleted', purge);
            reload();
          },
        },
      ] : null,
    })));
}

// ---------------------------------------------------------- garbage collection

function gcReport(r) {
  if (!r) return '—';
  return `${bytes(r.bytesFreed + r.manifestBytes + r.orphanBytes + r.binBytes)}: ${r.manifestsDeleted} manifests, ${r.blobsDeleted} blobs, ${r.linksRemoved} links, ${r.orphansDeleted} orphans, ${r.binExpired} bin entries${r.errors && r.errors.length ? `; errors: ${r.errors.join('; ')}` : ''}`;
}

function gcRunStatus(x) {
  if (x.status !== 'running') return h('span', { class: `badge ${x.status === 'succeeded' ? 'good' : x.status === 'failed' ? 'bad' : ''}` }, x.status);
  return h('span', { class: 'progress' }, h('progress', { 'aria-label': 'collecting' }), `${x.phase || 'running'}${x.seen != null ? `, ${x.seen} seen` : ''}`);
}

/** Estimate, start form and run history; `registry` null for the instance. */
async function gcPanel(view, registry) {
  const estimate = h('div', { 'aria-live': 'polite' });
  const runs = h('div');
  const loadEstimate = async () => {
    fill(estimate, h('p', { class: 'muted' }, 'Estimating…'));
    try {
      const e = await get(`/gc/estimate${query({ registry })}`);
      fill(estimate, cards([
        ['Not referenced (freed by a run)', bytes(e.sizeNonReferenced)],
        ['Untagged (freed with “delete untagged”)', bytes(e.sizeUntagged)],
        ['In all', bytes(e.sizeSummary)],
      ]));
    } catch (e) { fill(estimate, errorBox(e)); }
  };
  const loadRuns = async () => {
    try {
      const page = await get('/gc/runs?limit=50');
      const items = page.items.filter((x) => (registry ? x.registry === registry : true));
      fill(runs, dataTable({
        caption: 'Garbage collection runs',
        empty: 'No runs yet.',
        rows: items,
        columns: [
          { label: 'Started', cell: (x) => when(x.startedAt) },
          ...(registry ? [] : [{ label: 'Scope', cell: (x) => x.registry || 'instance' }]),
          { label: 'Mode', cell: (x) => [x.dryRun ? 'dry run' : 'run', x.deleteUntagged ? ', untagged too' : ''].join('') },
          { label: 'Status', cell: gcRunStatus },
          { label: 'Freed', cell: (x) => (x.error ? h('span', { class: 'badge bad' }, x.error) : gcReport(x.report)) },
          { label: 'Finished', cell: (x) => (x.finishedAt ? when(x.finishedAt) : '—') },
          ...whenWritable({
            label: 'Actions',
            cell: (x) => (x.status === 'running' ? h('button', {
              type: 'button', class: 'small',
              onclick: async () => { try { await api('POST', `/gc/runs/${enc(x.id)}/cancel`); } catch (e) { notify(messageOf(e), true); } loadRuns(); },
            }, 'Cancel') : ''),
          }),
        ],
      }));
      return items.some((x) => x.status === 'running');
    } catch (e) { fill(runs, errorBox(e)); return false; }
  };
  add(view, h('h2', {}, 'Estimate'), estimate);
  if (may.write() && (registry || may.instance())) {
    add(view, h('h2', {}, 'Collect'), form(null, [
      checkField('gc-untagged', 'Also delete untagged manifests (nothing tags, lists or refers to them)', false),
      checkField('gc-dry', 'Dry run: count what would go, delete nothing', false),
    ], 'Start garbage collection', async (f) => {
      const run = await api('POST', '/gc', {
        registry, deleteUntagged: f.querySelector('#gc-untagged').checked, dryRun: f.querySelector('#gc-dry').checked,
      });
      notify('Garbage collection started.');
      await loadRuns();
      await follow(`/gc/runs/${enc(run.id)}`, () => loadRuns());
      await loadEstimate();
      notify('Garbage collection finished.');
    }));
  }
  add(view, h('h2', {}, 'History'), runs);
  await Promise.all([loadEstimate(), loadRuns()]);
  every(3000, loadRuns);
}

async function registryGcTab(view, reg) {
  await gcPanel(view, reg.name);
}

route(/^#\/gc$/, async (view) => {
  title(view, 'Garbage collection');
  add(view, h('p', { class: 'muted' }, 'Online: pushes and pulls go on while it runs. What is younger than the grace period (an hour by default) is kept.'));
  await gcPanel(view, null);
});

// ------------------------------------------------------ storage over time

async function usageTab(view, reg) {
  const days = 30;
  const since = new Date(Date.now() - days * 86400e3).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const data = await get(`/registries/${enc(reg.name)}/usage${query({ since })}`);
  add(view, h('p', { class: 'muted' }, `Storage used over the last ${days} days, as the server samples it.`));
  if (!data.items.length) { add(view, h('p', { class: 'empty' }, 'No samples yet.')); return; }
  add(view, usageChart(data.items, reg.storageLimitBytes));
  add(view, dataTable({
    caption: 'Usage samples',
    rows: data.items.slice(-10).reverse(),
    columns: [
      { label: 'At', cell: (s) => when(s.at) },
      { label: 'Used', num: true, cell: (s) => bytes(s.bytesUsed) },
      { label: 'Repositories', num: true, cell: (s) => String(s.repositoryCount) },
    ],
  }));
}

function usageChart(samples, limit) {
  const W = 720, H = 240, L = 70, R = 10, T = 10, B = 30;
  const xs = samples.map((s) => Date.parse(s.at));
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  // the limit is drawn when it is near the usage; far above, it would
  // flatten the line, so it is named instead
  const most = Math.max(...samples.map((s) => s.bytesUsed), 1);
  const showLimit = limit != null && limit <= most * 4;
  const top = showLimit ? Math.max(limit * 1.05, most) : most * 1.15;
  const X = (t) => L + ((t - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - v / top) * (H - T - B);
  const points = samples.map((s, i) => `${X(xs[i]).toFixed(1)},${Y(s.bytesUsed).toFixed(1)}`).join(' ');
  const last = samples[samples.length - 1];
  return svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `Storage used, from ${bytes(samples[0].bytesUsed)} to ${bytes(last.bytesUsed)}` },
    svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    svg('text', { x: 4, y: T + 10 }, bytes(top)),
    svg('text', { x: 4, y: H - B }, '0'),
    svg('text', { x: L, y: H - 8 }, new Date(x0).toLocaleDateString()),
    svg('text', { x: W - R - 80, y: H - 8 }, new Date(x1).toLocaleDateString()),
    showLimit ? svg('line', { class: 'limit', x1: L, y1: Y(limit), x2: W - R, y2: Y(limit) }) : null,
    limit != null && !showLimit ? svg('text', { x: W - R - 200, y: T + 10 }, `limit ${bytes(limit)}, above the chart`) : null,
    svg('polyline', { class: 'line', points }));
}

// ---------------------------------------------------------------- settings

async function settingsTab(view, reg) {
  const limit = sizeInput('set-limit', reg.storageLimitBytes);
  add(view, form('Storage limit', [
    h('div', { class: 'field' }, h('label', { for: 'set-limit' }, 'Limit (empty: none)'), limit.el),
  ], 'Save limit', async () => {
    await api('PATCH', `/registries/${enc(reg.name)}`, { storageLimitBytes: limit.value() });
    notify('Storage limit saved.');
    render();
  }));
  const vis = h('select', {}, ['private', 'public'].map((v) => h('option', { value: v, selected: v === reg.visibility }, v)));
  add(view, form('Visibility', [field('set-vis', 'Who may pull', vis, 'public: anyone, without credentials; private: users and tokens of the registry.')], 'Save visibility', async () => {
    await api('PATCH', `/registries/${enc(reg.name)}`, { visibility: vis.value });
    notify('Visibility saved.');
    render();
  }));
  {
    add(view, h('div', { class: 'form' }, h('h3', {}, 'Delete this registry'),
      h('p', {}, 'Its repositories, users and tag rules are deleted; tokens lose their grant to it. The blobs are freed by the next garbage collection.'),
      h('button', {
        type: 'button', class: 'danger',
        onclick: async () => {
          if (!await confirmTyped(`Delete ${reg.name}?`, 'This cannot be undone.', reg.name)) return;
          try {
            await api('DELETE', `/registries/${enc(reg.name)}`);
            notify(`Registry “${reg.name}” deleted.`);
            location.hash = '#/registries';
          } catch (e) { notify(messageOf(e), true); }
        },
      }, 'Delete registry…')));
  }
}

// -------------------------------------------------------------- repository

function pullCommand(prefix, kind, tag, digest) {
  if (kind === 'helm_chart') return tag ? `helm pull oci://${prefix} --version ${tag}` : `helm pull oci://${prefix}@${digest}`;
  if (kind === 'artifact') return `oras pull ${prefix}${tag ? ':' + tag : '@' + digest}`;
  return `docker pull ${prefix}${tag ? ':' + tag : '@' + digest}`;
}

function artifactHref(reg, repo, digest) {
  return `#/registries/${enc(reg)}/repositories/${enc(repo)}/artifacts/${enc(digest)}`;
}

function tagHref(reg, repo, tag) {
  return `#/registries/${enc(reg)}/repositories/${enc(repo)}/tags/${enc(tag)}`;
}

function referrerList(regName, repoName, a) {
  const groups = Object.entries(a.referrers || {});
  if (!groups.length) return null;
  return h('div', { class: 'referrers' }, groups.map(([type, refs]) => h('div', {},
    h('span', { class: 'muted' }, `${type}: `),
    refs.map((r) => h('a', { href: artifactHref(regName, repoName, r.digest), title: r.digest }, shortDigest(r.digest), ' ')))));
}

route(/^#\/registries\/([^/]+)\/repositories\/([^/]+)$/, async (view, regName, repoName) => {
  const base = `/registries/${enc(regName)}/repositories/${enc(repoName)}`;
  const repo = await get(base);
  title(view, repo.fullName, [['Registries', '#/registries'], [regName, `#/registries/${enc(regName)}`]]);
  add(view, cards([
    ['Kind', kindBadge(repo.kind)], ['Size', bytes(repo.sizeBytes)], ['Artifacts', String(repo.artifactCount)],
    ['Tags', String(repo.tagCount)], ['Pulls', String(repo.pullCount)], ['Last pulled', when(repo.lastPulledAt)],
  ]));
  const params = { tag: '', sort: '-pushed', limit: 50 };
  const url = () => `${base}/artifacts${query(params)}`;
  const list = h('div');
  let pages;
  add(view, h('h2', {}, 'Artifacts'), h('div', { class: 'toolbar' },
    searchBox('art-tag', 'Tag starts with', (v) => { params.tag = v; pages.reset(url()); }),
    selectBox('art-sort', 'Sort by', [['-pushed', 'newest push'], ['-pulled', 'last pulled'], ['-size', 'size'], ['digest', 'digest']],
      (v) => { params.sort = v; pages.reset(url()); }, params.sort)), list);
  const cleanup = async (body, what) => {
    const r = await api('POST', `${base}/cleanup`, body);
    const done = r.deletedTags.length + r.deletedDigests.length;
    if (r.failed.length) notify(`${done} ${what} deleted; not deleted: ${r.failed.map((f) => `${f.reference} (${f.reason})`).join('; ')}`, true);
    else notify(`${done} ${what} deleted (into the recycle bin).`);
  };
  pages = paged(list, url(), (page, reload) => {
    // referrers (signatures, SBOMs) are shown under their subject when the subject is on this page
    const here = new Set(page.items.map((a) => a.digest));
    const rows = page.items.filter((a) => !(a.subject && here.has(a.subject)));
    return dataTable({
      caption: 'Artifacts',
      empty: params.tag ? 'No artifact has a matching tag.' : 'No artifacts.',
      rows,
      columns: [
        {
          label: 'Digest',
          cell: (a) => h('div', {},
            h('a', { href: artifactHref(regName, repoName, a.digest), title: a.digest, class: 'mono' }, shortDigest(a.digest)), ' ',
            h('button', { type: 'button', class: 'small', onclick: () => copy(a.digest), 'aria-label': `Copy digest ${a.digest}` }, 'Copy'),
            a.subject ? h('div', { class: 'muted' }, 'refers to ', h('a', { href: artifactHref(regName, repoName, a.subject) }, shortDigest(a.subject))) : null,
            referrerList(regName, repoName, a)),
        },
        { label: 'Kind', cell: (a) => [kindBadge(a.kind), a.artifactType && a.kind !== 'image' ? h('div', { class: 'muted' }, a.artifactType) : null] },
        { label: 'Tags', cell: (a) => (a.tags.length ? a.tags.map((t) => h('a', { class: 'badge', href: tagHref(regName, repoName, t) }, t)) : h('span', { class: 'muted' }, 'untagged')) },
        { label: 'Platforms', cell: (a) => (a.children.length ? a.children.map((c) => platformText(c.platform)).filter(Boolean).join(', ') : platformText(a.platform)) },
        { label: 'Size', num: true, cell: (a) => bytes(a.sizeBytes) },
        { label: 'Pushed', cell: (a) => when(a.pushedAt) },
        { label: 'Last pulled', cell: (a) => when(a.lastPulledAt) },
        { label: 'Pulls', num: true, cell: (a) => String(a.pullCount) },
        { label: 'Pull', cell: (a) => h('button', { type: 'button', class: 'small', onclick: () => copy(pullCommand(repo.pullPrefix, a.kind, a.tags[0], a.digest)) }, 'Copy pull command') },
      ],
      actions: may.write() ? [{
        label: 'Delete selected', danger: true,
        run: async (picked) => {
          if (!await confirmAction(`Delete ${picked.length} artifacts?`, 'The manifests and all their tags go to the recycle bin.')) return;
          try { await cleanup({ tags: [], digests: picked.map((a) => a.digest) }, 'artifacts'); } catch (e) { notify(messageOf(e), true); }
          reload();
        },
      }] : null,
    });
  });
  // tags, for deleting several at once
  const tagList = h('div');
  add(view, h('h2', {}, 'Tags'), tagList);
  paged(tagList, `${base}/tags?limit=100`, (page, reload) => dataTable({
    caption: 'Tags',
    empty: 'No tags.',
    rows: page.items,
    columns: [
      { label: 'Tag', cell: (t) => h('a', { href: tagHref(regName, repoName, t.name) }, t.name) },
      { label: 'Digest', cell: (t) => h('a', { class: 'mono', href: artifactHref(regName, repoName, t.digest), title: t.digest }, shortDigest(t.digest)) },
      { label: 'Updated', cell: (t) => when(t.updatedAt) },
    ],
    actions: may.write() ? [{
      label: 'Delete selected tags', danger: true,
      run: async (picked) => {
        if (!await confirmAction(`Delete ${picked.length} tags?`, `${picked.map((t) => t.name).join(', ')} go to the recycle bin; the manifests stay.`)) return;
        try { await cleanup({ tags: picked.map((t) => t.name), digests: [] }, 'tags'); } catch (e) { notify(messageOf(e), true); }
        reload();
        pages.reload();
      },
    }] : null,
  }));
  if (may.write()) {
    add(view, h('div', { class: 'form' }, h('h3', {}, 'Delete this repository'), h('button', {
      type: 'button', class: 'danger',
      onclick: async () => {
        if (!await confirmAction(`Delete ${repo.fullName}?`, 'Every tag and manifest is deleted at once (not kept in the recycle bin); its blobs are freed by the next garbage collection.')) return;
        try {
          await api('DELETE', base);
          notify(`${repo.fullName} deleted.`);
          location.hash = `#/registries/${enc(regName)}`;
        } catch (e) { notify(messageOf(e), true); }
      },
    }, 'Delete repository…')));
  }
});

// ---------------------------------------------------------------- artifact

route(/^#\/registries\/([^/]+)\/repositories\/([^/]+)\/artifacts\/([^/]+)$/, async (view, regName, repoName, digest) => {
  const repoBase = `/registries/${enc(regName)}/repositories/${enc(repoName)}`;
  const [repo, a] = await Promise.all([get(repoBase), get(`${repoBase}/artifacts/${enc(digest)}`)]);
  title(view, `${repo.fullName}@${shortDigest(a.digest)}`, [['Registries', '#/registries'], [regName, `#/registries/${enc(regName)}`], [repoName, `#/registries/${enc(regName)}/repositories/${enc(repoName)}`]]);
  const prop = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
  add(view, h('dl', { class: 'props' },
    prop('Digest', h('span', {}, h('code', {}, a.digest), ' ', h('button', { type: 'button', class: 'small', onclick: () => copy(a.digest) }, 'Copy'))),
    prop('Kind', kindBadge(a.kind)),
    prop('Media type', h('code', {}, a.mediaType)),
    a.artifactType ? prop('Artifact type', h('code', {}, a.artifactType)) : null,
    a.platform ? prop('Platform', platformText(a.platform)) : null,
    prop('Size', `${bytes(a.sizeBytes)} (manifest ${bytes(a.manifestBytes)})`),
    prop('Pushed', when(a.pushedAt)),
    prop('Last pulled', when(a.lastPulledAt)),
    prop('Pulls', String(a.pullCount)),
    a.subject ? prop('Refers to', h('a', { href: artifactHref(regName, repoName, a.subject), class: 'mono' }, a.subject)) : null));
  add(view, h('h2', {}, 'Pull'), copyLine(pullCommand(repo.pullPrefix, a.kind, a.tags[0], a.digest), 'pull command'),
    a.tags.length ? null : copyLine(pullCommand(repo.pullPrefix, a.kind, null, a.digest), 'pull by digest'));
  // tags
  add(view, h('h2', {}, 'Tags'));
  if (!a.tags.length) add(view, h('p', { class: 'muted' }, 'Untagged.'));
  add(view, h('ul', {}, a.tags.map((t) => h('li', {},
    h('a', { href: tagHref(regName, repoName, t) }, t), ' ',
    ...whenWritable(h('button', {
      type: 'button', class: 'small danger', 'aria-label': `Delete tag ${t}`,
      onclick: async () => {
        if (!await confirmAction(`Delete the tag ${t}?`, 'The tag goes to the recycle bin; the manifest stays.')) return;
        try { await api('DELETE', `${repoBase}/tags/${enc(t)}`); notify(`Tag ${t} deleted.`); render(); } catch (e) { notify(messageOf(e), true); }
      },
    }, 'Delete tag'))))));
  if (may.write()) {
    const tag = h('input', { type: 'text', spellcheck: 'false', autocomplete: 'off' });
    add(view, form(null, [field('add-tag', 'Add a tag (or move one here)', tag)], 'Tag', async () => {
      await api('PUT', `${repoBase}/tags/${enc(tag.value.trim())}`, { digest: a.digest });
      notify(`Tagged ${tag.value.trim()}.`);
      render();
    }));
  }
  if (a.children.length) {
    add(view, h('h2', {}, 'Platforms'), dataTable({
      caption: 'Index children',
      rows: a.children,
      columns: [
        { label: 'Platform', cell: (c) => platformText(c.platform) || '—' },
        { label: 'Digest', cell: (c) => h('a', { class: 'mono', href: artifactHref(regName, repoName, c.digest), title: c.digest }, shortDigest(c.digest)) },
        { label: 'Media type', cell: (c) => h('code', {}, c.mediaType) },
        { label: 'Size', num: true, cell: (c) => bytes(c.sizeBytes) },
      ],
    }));
  }
  const blobs = [...(a.config ? [{ ...a.config, role: 'config' }] : []), ...a.layers.map((l, i) => ({ ...l, role: `layer ${i + 1}` }))];
  if (blobs.length) {
    add(view, h('h2', {}, 'Config and layers'), dataTable({
      caption: 'Blobs',
      rows: blobs,
      columns: [
        { label: 'Part', cell: (b) => b.role },
        { label: 'Digest', cell: (b) => h('a', { class: 'mono', href: `#/registries/${enc(regName)}/blobs/${enc(b.digest)}`, title: `Why is ${b.digest} kept?` }, shortDigest(b.digest)) },
        { label: 'Media type', cell: (b) => h('code', {}, b.mediaType) },
        { label: 'Size', num: true, cell: (b) => bytes(b.sizeBytes) },
      ],
    }));
  }
  const refs = Object.entries(a.referrers || {});
  add(view, h('h2', {}, 'Referrers (signatures, SBOMs, attestations)'));
  if (!refs.length) add(view, h('p', { class: 'muted' }, 'None.'));
  for (const [type, list] of refs) {
    add(view, h('h3', {}, type), dataTable({
      caption: `Referrers of type ${type}`,
      rows: list,
      columns: [
        { label: 'Digest', cell: (r) => h('a', { class: 'mono', href: artifactHref(regName, repoName, r.digest), title: r.digest }, shortDigest(r.digest)) },
        { label: 'Size', num: true, cell: (r) => bytes(r.sizeBytes) },
        { label: 'Annotations', cell: (r) => (r.annotations ? Object.entries(r.annotations).map(([k, v]) => h('div', { class: 'mono' }, `${k}: ${v}`)) : '—') },
      ],
    }));
  }
  // why is it kept?
  const kept = await get(`${repoBase}/artifacts/${enc(a.digest)}/kept-by`);
  add(view, h('h2', {}, 'What keeps it'), h('dl', { class: 'props' },
    prop('Tags', kept.tags.length ? kept.tags.join(', ') : 'none'),
    prop('Listed by indexes', kept.indexes.length ? kept.indexes.map((i) => h('div', {}, h('a', { class: 'mono', href: artifactHref(regName, repoName, i.digest) }, shortDigest(i.digest)), i.tags.length ? ` (${i.tags.join(', ')})` : '')) : 'none'),
    prop('Refers to', kept.subject ? h('a', { class: 'mono', href: artifactHref(regName, repoName, kept.subject) }, shortDigest(kept.subject)) : 'nothing'),
    prop('Tags in the recycle bin', kept.binnedTags.length ? kept.binnedTags.join(', ') : 'none'),
    prop('Garbage collection', kept.collectable ? h('span', { class: 'badge bad' }, 'a “delete untagged” run would delete it now') : h('span', { class: 'badge good' }, 'kept'))));
  if (may.write()) {
    add(view, h('div', { class: 'form' }, h('h3', {}, 'Delete this artifact'), h('button', {
      type: 'button', class: 'danger',
      onclick: async () => {
        if (!await confirmAction('Delete this artifact?', `The manifest ${shortDigest(a.digest)} and its tags (${a.tags.join(', ') || 'none'}) go to the recycle bin.`)) return;
        try {
          await api('DELETE', `${repoBase}/artifacts/${enc(a.digest)}`);
          notify('Artifact deleted (into the recycle bin).');
          location.hash = `#/registries/${enc(regName)}/repositories/${enc(repoName)}`;
        } catch (e) { notify(messageOf(e), true); }
      },
    }, 'Delete artifact…')));
  }
});

// ------------------------------------------------------------- tag history

route(/^#\/registries\/([^/]+)\/repositories\/([^/]+)\/tags\/([^/]+)$/, async (view, regName, repoName, tag) => {
  const repoBase = `/registries/${enc(regName)}/repositories/${enc(repoName)}`;
  title(view, `${regName}/${repoName}:${tag}`, [['Registries', '#/registries'], [regName, `#/registries/${enc(regName)}`], [repoName, `#/registries/${enc(regName)}/repositories/${enc(repoName)}`]]);
  add(view, h('p', { class: 'muted' }, 'Every move of this tag, newest first. Restore points the tag back at a manifest it held.'));
  const list = h('div');
  add(view, list);
  paged(list, `${repoBase}/tags/${enc(tag)}/history?limit=100`, (page, reload) => dataTable({
    caption: 'Tag history',
    empty: 'No history.',
    rows: page.items,
    columns: [
      { label: 'When', cell: (e) => when(e.at) },
      { label: 'Change', cell: (e) => (e.from && e.to ? 'moved' : e.to ? 'created' : 'deleted') },
      { label: 'From', cell: (e) => (e.from ? h('a', { class: 'mono', href: artifactHref(regName, repoName, e.from), title: e.from }, shortDigest(e.from)) : '—') },
      { label: 'To', cell: (e) => (e.to ? h('a', { class: 'mono', href: artifactHref(regName, repoName, e.to), title: e.to }, shortDigest(e.to)) : '—') },
      { label: 'By', cell: (e) => e.by },
      ...whenWritable({
        label: 'Restore',
        cell: (e) => (e.from ? h('button', {
          type: 'button', class: 'small',
          onclick: async () => {
            if (!await confirmAction(`Point ${tag} at ${shortDigest(e.from)}?`, 'The tag moves back to the manifest it held before this change.', 'Restore')) return;
            try { await api('PUT', `${repoBase}/tags/${enc(tag)}`, { digest: e.from }); notify(`${tag} now points at ${shortDigest(e.from)}.`); } catch (err) { notify(messageOf(err), true); }
            reload();
          },
        }, `Restore ${shortDigest(e.from)}`) : ''),
      }),
    ],
  }));
});

// ------------------------------------------------------------ a blob, kept

route(/^#\/registries\/([^/]+)\/blobs\/([^/]+)$/, async (view, regName, digest) => {
  title(view, `Why is ${shortDigest(digest)} still here?`, [['Registries', '#/registries'], [regName, `#/registries/${enc(regName)}`]]);
  const k = await get(`/registries/${enc(regName)}/blobs/${enc(digest)}/kept-by`);
  add(view, h('p', {}, h('code', {}, k.digest), k.size != null ? ` — ${bytes(k.size)}` : ''));
  if (!k.repositories.length) {
    add(view, h('p', {}, 'No repository of this registry links it: the next garbage collection frees it (once it is older than the grace period).'));
    return;
  }
  for (const r of k.repositories) {
    add(view, h('h2', {}, h('a', { href: `#/registries/${enc(regName)}/repositories/${enc(r.repository)}` }, r.repository)),
      h('p', { class: 'muted' }, 'Linked ', when(r.linkedAt)),
      r.manifests.length ? dataTable({
        caption: `Manifests of ${r.repository} that reference it`,
        rows: r.manifests,
        columns: [
          { label: 'Manifest', cell: (m) => h('a', { class: 'mono', href: artifactHref(regName, r.repository, m.digest), title: m.digest }, shortDigest(m.digest)) },
          { label: 'Tags', cell: (m) => (m.tags.length ? m.tags.join(', ') : h('span', { class: 'muted' }, 'untagged')) },
          { label: 'In the recycle bin', cell: (m) => (m.inRecycleBin ? 'yes' : 'no') },
        ],
      }) : h('p', {}, 'No manifest references it here: only the link keeps it (an upload not yet in a manifest, or garbage past the grace period).'));
  }
});

// ------------------------------------------------------------------- tokens

route(/^#\/tokens$/, async (view) => {
  title(view, 'API tokens');
  add(view, h('p', { class: 'muted' }, 'Tokens for scripts, CI and this console. A token sees only the registries it is scoped to; a read-only one changes nothing.'));
  const params = { search: '', scope: '', mode: '', status: '', sort: '-created' };
  const url = () => `/tokens${query(params)}`;
  const list = h('div');
  let pages;
  if (may.write()) {
    const name = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
    const regs = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'every registry' });
    const expires = h('input', { type: 'datetime-local' });
    add(view, h('details', {}, h('summary', {}, 'Create a token'), form(null, [
      field('tok-name', 'Name', name),
      field('tok-regs', 'Registries (comma-separated; empty: every registry)', regs),
      checkField('tok-rw', 'Read-write (otherwise read-only)', false),
      field('tok-exp', 'Expires (optional)', expires),
    ], 'Create token', async (f) => {
      const list = regs.value.split(',').map((s) => s.trim()).filter(Boolean);
      const t = await api('POST', '/tokens', {
        name: name.value.trim(), registries: list.length ? list : null, readWrite: f.querySelector('#tok-rw').checked, expiresAt: isoFromLocal(expires.value),
      });
      name.value = ''; regs.value = '';
      pages.reload();
      await credentialsDialog(`Token “${t.name}” created`, t);
    })));
  }
  add(view, h('div', { class: 'toolbar' },
    searchBox('tok-search', 'Search by name', (v) => { params.search = v; pages.reset(url()); }),
    selectBox('tok-scope', 'Scope', [['', 'any'], ['all', 'every registry'], ['scoped', 'some registries']], (v) => { params.scope = v; pages.reset(url()); }),
    selectBox('tok-mode', 'Mode', [['', 'any'], ['read-write', 'read-write'], ['read-only', 'read-only']], (v) => { params.mode = v; pages.reset(url()); }),
    selectBox('tok-status', 'Status', [['', 'any'], ['active', 'active'], ['revoked', 'revoked']], (v) => { params.status = v; pages.reset(url()); }),
    selectBox('tok-sort', 'Sort by', [['-created', 'newest first'], ['name', 'name'], ['-lastUsed', 'last used'], ['expires', 'expiring first']], (v) => { params.sort = v; pages.reset(url()); }, params.sort)),
  list);
  const act = (label, fn, cls) => h('button', { type: 'button', class: `small ${cls || ''}`, onclick: fn }, label);
  const refresh = async (t) => {
    const input = h('input', { type: 'datetime-local', id: 'dlg-exp' });
    const v = await modal(`Refresh “${t.name}”`, h('div', {}, h('p', {}, 'Set a new expiry; the secret stays the same.'), h('div', { class: 'field' }, h('label', { for: 'dlg-exp' }, 'Expires (empty: never)'), input)),
      [{ value: 'cancel', label: 'Cancel' }, { value: 'ok', label: 'Refresh', class: 'primary' }]);
    if (v !== 'ok') return;
    try { await api('POST', `/tokens/${enc(t.id)}/refresh`, { expiresAt: isoFromLocal(input.value) }); notify(`“${t.name}” refreshed.`); } catch (e) { notify(messageOf(e), true); }
    pages.reload();
  };
  pages = paged(list, url(), (page, reload) => dataTable({
    caption: 'API tokens',
    empty: 'No tokens.',
    rows: page.items,
    columns: [
      { label: 'Name', cell: (t) => h('span', {}, t.name, h('div', { class: 'muted mono' }, t.id)) },
      { label: 'Registries', cell: (t) => (t.registries ? t.registries.join(', ') : h('span', { class: 'muted' }, 'every registry')) },
      { label: 'Mode', cell: (t) => (t.readWrite ? 'read-write' : 'read-only') },
      { label: 'Status', cell: (t) => h('span', { class: `badge ${t.status === 'active' && !t.expired ? 'good' : 'bad'}` }, t.expired ? 'expired' : t.status) },
      { label: 'Created', cell: (t) => when(t.createdAt) },
      { label: 'Expires', cell: (t) => (t.expiresAt ? when(t.expiresAt) : h('span', { class: 'muted' }, 'never')) },
      { label: 'Last used', cell: (t) => when(t.lastUsedAt) },
      ...whenWritable({
        label: 'Actions',
        cell: (t) => h('div', { class: 'actions' },
          act('Refresh…', () => refresh(t)),
          act('Regenerate', async () => {
            if (!await confirmAction(`Regenerate “${t.name}”?`, 'A new secret replaces the old one, which stops working at once.', 'Regenerate')) return;
            try { await credentialsDialog(`New secret for “${t.name}”`, await api('POST', `/tokens/${enc(t.id)}/regenerate`)); } catch (e) { notify(messageOf(e), true); }
            reload();
          }),
          t.status === 'active' ? act('Revoke', async () => {
            if (!await confirmAction(`Revoke “${t.name}”?`, 'It stops working at once; the record stays.', 'Revoke')) return;
            await eachOf([t], 'token revoked', (x) => api('POST', `/tokens/${enc(x.id)}/revoke`));
            reload();
          }, 'danger') : null,
          act('Delete', async () => {
            if (!await confirmAction(`Delete “${t.name}”?`, 'It stops working and its record goes.')) return;
            await eachOf([t], 'token deleted', (x) => api('DELETE', `/tokens/${enc(x.id)}`));
            reload();
          }, 'danger')),
      }),
    ],
    actions: may.write() ? [
      {
        label: 'Revoke selected', danger: true,
        run: async (rows) => {
          if (!await confirmAction(`Revoke ${rows.length} tokens?`, rows.map((t) => t.name).join(', '), 'Revoke')) return;
          await eachOf(rows, 'tokens revoked', (x) => api('POST', `/tokens/${enc(x.id)}/revoke`));
          reload();
        },
      },
      {
        label: 'Delete selected', danger: true,
        run: async (rows) => {
          if (!await confirmAction(`Delete ${rows.length} tokens?`, rows.map((t) => t.name).join(', '))) return;
          await eachOf(rows, 'tokens deleted', (x) => api('DELETE', `/tokens/${enc(x.id)}`));
          reload();
        },
      },
    ] : null,
  }));
});

// ---------------------------------------------------------------- audit log

route(/^#\/audit$/, async (view) => {
  title(view, 'Audit log');
  add(view, h('p', { class: 'muted' }, 'Every change through the management API and every push and delete on /v2/, newest first.'));
  const f = {
    registry: h('input', { type: 'text', spellcheck: 'false' }),
    principal: h('input', { type: 'text', spellcheck: 'false', placeholder: 'admin, token:…, user:…' }),
    action: h('input', { type: 'text', spellcheck: 'false', placeholder: 'v2.manifest.put' }),
    since: h('input', { type: 'datetime-local' }),
    until: h('input', { type: 'datetime-local' }),
  };
  const list = h('div');
  let pages = null;
  const url = () => `/audit${query({
    registry: f.registry.value.trim(), principal: f.principal.value.trim(), action: f.action.value.trim(),
    since: isoFromLocal(f.since.value), until: isoFromLocal(f.until.value), limit: 50,
  })}`;
  add(view, form('Filters', [
    h('div', { class: 'form-row' }, field('aud-reg', 'Registry', f.registry), field('aud-pri', 'Principal', f.principal), field('aud-act', 'Action', f.action)),
    h('div', { class: 'form-row' }, field('aud-since', 'Since', f.since), field('aud-until', 'Until', f.until)),
  ], 'Apply filters', async () => { pages.reset(url()); }), list);
  pages = paged(list, url(), (page) => dataTable({
    caption: 'Audit entries',
    empty: 'No entries match.',
    rows: page.items,
    rowClass: (e) => (e.status >= 400 ? 'refused' : ''),
    columns: [
      { label: 'When', cell: (e) => when(e.at) },
      { label: 'Who', cell: (e) => e.principal },
      { label: 'Client', cell: (e) => h('span', { class: 'mono' }, e.client) },
      { label: 'Action', cell: (e) => h('code', {}, e.action) },
      { label: 'Target', cell: (e) => h('span', { class: 'mono' }, e.target) },
      { label: 'Registry', cell: (e) => e.registry || '—' },
      { label: 'Result', num: true, cell: (e) => h('span', { class: `badge ${e.status >= 400 ? 'bad' : 'good'}` }, String(e.status)) },
    ],
  }));
});

// -------------------------------------------------------------------- boot

document.getElementById('sign-out').addEventListener('click', () => signOut(null));
window.addEventListener('hashchange', render);
render();
