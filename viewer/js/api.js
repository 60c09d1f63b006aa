// The server's API as the viewer uses it: the signed-in session, and requests that carry it.
//
// The access token lives in sessionStorage (gone when the tab closes). Every request sends
// it as a bearer token; a 401 ends the session and brings back the sign-in page. Errors
// become ApiError with the server's JSON `description`, for the user to read.

import { lang, tr } from './i18n.js';

const KEY = 'pipetwin.session';

export class ApiError extends Error {
  constructor(status, code, description, url) {
    super(description || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.description = description || `HTTP ${status}`;
    this.url = url;
  }
}

export const session = {
  get() {
    try {
      const s = JSON.parse(sessionStorage.getItem(KEY) || 'null');
      return s && s.token ? s : null;
    } catch {
      return null;
    }
  },
  set(value) {
    sessionStorage.setItem(KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

let unauthorised = () => {};

/** What to do when the server says the session is over (token expired, user disabled). */
export function onUnauthorised(handler) {
  unauthorised = handler;
}

export function authHeaders() {
  const s = session.get();
  return s ? { Authorization: `Bearer ${s.token}` } : {};
}

/** The user's language for the server's messages (errors come back in it: ApiError.description). */
export function languageHeaders() {
  return { 'Accept-Language': lang() === 'en' ? 'en' : 'zh-CN' };
}

async function problem(response) {
  let code = `HTTP_${response.status}`;
  let description = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    code = body.code || code;
    description = body.description || (typeof body.detail === 'string' ? body.detail : description);
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, code, description, response.url);
}

/** Sign in with a name and password: the session ({token, user, role}); the app's start reads
 * `/me` for the permissions and the language (once). */
export async function signIn(username, password) {
  const form = new URLSearchParams({ username, password });
  const r = await fetch('/token', { method: 'POST', body: form, headers: languageHeaders() });
  if (!r.ok) throw await problem(r);
  const t = await r.json();
  const s = { token: t.access_token, user: t.user, role: t.role, expires: Date.now() + t.expires_in * 1000 };
  session.set(s);
  return s;
}

/** A request to the API with the session's token; throws ApiError for any error answer. */
export async function request(path, { method = 'GET', json, body, headers = {}, query } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null) continue;
      for (const one of Array.isArray(v) ? v : [v]) params.append(k, String(one));
    }
    const q = params.toString();
    if (q) url += (url.includes('?') ? '&' : '?') + q;
  }
  const h = { ...languageHeaders(), ...authHeaders(), ...headers };
  if (json !== undefined) {
    h['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let r;
  try {
    r = await fetch(url, { method, headers: h, body });
  } catch (e) {
    throw new ApiError(0, 'NETWORK', tr(`无法连接服务器（${e.message}）`, `the server cannot be reached (${e.message})`), url);
  }
  if (r.status === 401) {
    const err = await problem(r);
    session.clear();
    unauthorised(err.description);
    throw err;
  }
  if (!r.ok) throw await problem(r);
  return r;
}

export async function getJSON(path, query) {
  return (await request(path, { query })).json();
}

export async function postJSON(path, json, query) {
  return (await request(path, { method: 'POST', json, query })).json();
}

export async function postText(path, json, query) {
  return (await request(path, { method: 'POST', json, query })).text();
}

export async function getText(path, query) {
  return (await request(path, { query })).text();
}

/** Run an OGC API process synchronously: its JSON result, or its SVG / HTML with `format`. */
export async function execute(processId, inputs, format) {
  const path = `/processes/${encodeURIComponent(processId)}/execution`;
  const query = format ? { f: format } : undefined;
  return format ? postText(path, { inputs }, query) : postJSON(path, { inputs }, query);
}

/** Fetch a signed-in file (a PDF, BCF, CSV) and hand it to the browser as a download named
 * `filename`; `options` as for request(). Returns the file's size in bytes. */
export async function download(path, filename, options = {}) {
  const blob = await (await request(path, options)).blob();
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  return blob.size;
}

export function can(permission) {
  const s = session.get();
  return Boolean(s && s.permissions && s.permissions.includes(permission));
}

export const enc = encodeURIComponent;
