// The API client: a bearer token kept for the browser tab, JSON in and out, and errors as
// exceptions carrying the API's stable code.

const TOKEN_KEY = "boxoffice.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** A key for one logical request, reused if the same request is retried. */
export function idempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function call(method, path, { body, key } = {}) {
  const headers = { accept: "application/json" };
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  if (key) headers["idempotency-key"] = key;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : {};
  if (!response.ok) {
    const error = json.error || {};
    if (response.status === 401) signOut();
    throw new ApiError(response.status, error.code || "HTTP_" + response.status, error.message || response.statusText);
  }
  return json;
}

export async function signIn(email, password) {
  const { data } = await call("POST", "/auth/login", { body: { email, password } });
  sessionStorage.setItem(TOKEN_KEY, data.accessToken);
  return data;
}

export async function register(email, password) {
  await call("POST", "/auth/register", { body: { email, password } });
  return signIn(email, password);
}
