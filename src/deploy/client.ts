/**
 * The client side of deployments: upload an artifact to a `multirank serve`
 * and follow its build, and manage what is deployed there.
 */
import { HostError, VersionMismatchError, ValidationError } from "../errors.js";
import { FN_HEADERS, type WireError } from "../functions/wire.js";
import { errorFromAnswer } from "../functions/wire-error.js";
import { MULTIRANK_VERSION } from "../version.js";
import type { DeployResult, DeploymentInfo } from "./deployments.js";
import { DEPLOY_ROUTES } from "./deploy-routes.js";

/** Where to deploy: a server's URL and an admin key. */
export interface DeployTarget {
  /** The server, `http(s)://host:port`. @default process.env.MULTIRANK_HOST */
  url?: string | undefined;
  /** An admin key (`multirank serve --admin-key`). @default process.env.MULTIRANK_KEY */
  key?: string | undefined;
  signal?: AbortSignal | undefined;
}

/** One line of a build's log, as the server streams it. */
export interface BuildLogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/**
 * Uploads an artifact; resolves when the server serves it.
 * @throws {HostError} with the server's code when it refuses the artifact or the build fails (nothing changed then).
 */
export async function deployArtifact(artifact: Buffer, target: DeployTarget = {}, onLog: (line: BuildLogLine) => void = () => {}): Promise<DeployResult> {
  const { url, response } = await request(target, "POST", DEPLOY_ROUTES.deployments, artifact, "application/gzip");
  let result: DeployResult | undefined;
  let failure: WireError | undefined;
  const decoder = new TextDecoder();
  let buffer = "";
  const take = (line: string): void => {
    if (line.trim() === "") return;
    const event = JSON.parse(line) as { type: string; result?: DeployResult; error?: WireError } & BuildLogLine;
    if (event.type === "log") onLog(event);
    else if (event.type === "done") result = event.result;
    else if (event.type === "error") failure = event.error;
  };
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n")) >= 0) {
      take(buffer.slice(0, end));
      buffer = buffer.slice(end + 1);
    }
  }
  take(buffer);
  if (failure) throw new HostError({ url, status: 200, message: `the deployment failed on ${url}; nothing changed: ${failure.error}`, code: failure.code, kinds: failure.kinds });
  if (!result) throw new HostError({ url, status: 200, message: `the deployment's answer from ${url} ended before its result` });
  return result;
}

/** The projects deployed on a server. */
export async function listDeployments(target: DeployTarget = {}): Promise<DeploymentInfo[]> {
  const { response } = await request(target, "GET", DEPLOY_ROUTES.apps);
  return ((await response.json()) as { apps: DeploymentInfo[] }).apps;
}

/** A project (by its name, or an app's or function's) and its revisions. */
export async function deploymentInfo(name: string, target: DeployTarget = {}): Promise<DeploymentInfo> {
  const { response } = await request(target, "GET", DEPLOY_ROUTES.app(name));
  return (await response.json()) as DeploymentInfo;
}

/** Serves an earlier revision again (the previous one by default). */
export async function rollbackDeployment(name: string, revision?: number, target: DeployTarget = {}): Promise<DeployResult> {
  const { response } = await request(target, "POST", DEPLOY_ROUTES.rollback(name), Buffer.from(JSON.stringify(revision === undefined ? {} : { revision })), "application/json");
  return (await response.json()) as DeployResult;
}

/** Stops serving a project and forgets it. */
export async function deleteDeployment(name: string, target: DeployTarget = {}): Promise<void> {
  await request(target, "DELETE", DEPLOY_ROUTES.app(name));
}

async function request(target: DeployTarget, method: string, route: string, body?: Buffer, contentType?: string): Promise<{ url: string; response: Response }> {
  const url = (target.url ?? process.env.MULTIRANK_HOST ?? "").replace(/\/+$/, "");
  if (!/^https?:\/\/[^\s]+$/.test(url)) throw new ValidationError("no server to talk to: give --to URL (or set MULTIRANK_HOST)");
  const key = target.key ?? process.env.MULTIRANK_KEY;
  const headers: Record<string, string> = { [FN_HEADERS.version]: MULTIRANK_VERSION };
  if (key) headers.authorization = `Key ${key}`;
  if (contentType) headers["content-type"] = contentType;
  let response: Response;
  try {
    response = await fetch(`${url}${route}`, { method, headers, ...(body ? { body: body as unknown as Uint8Array<ArrayBuffer> } : {}), ...(target.signal ? { signal: target.signal } : {}) });
  } catch (error) {
    throw new HostError({ url, status: 0, message: `cannot reach the multirank server at ${url}: ${(error as Error).message}`, cause: error });
  }
  const theirs = response.headers.get(FN_HEADERS.version);
  if (theirs !== null && theirs !== MULTIRANK_VERSION) throw new VersionMismatchError(MULTIRANK_VERSION, theirs, url);
  if (!response.ok) throw errorFromAnswer({ url, status: response.status, text: await response.text(), what: `${method} ${route}` });
  return { url, response };
}
