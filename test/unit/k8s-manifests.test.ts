/**
 * The Kubernetes manifests in deploy/k8s, checked offline: every document is
 * validated against its kind's schema (kubernetes-models 4.5.1, the
 * Kubernetes OpenAPI schemas), and the invariants the README's recipe relies
 * on hold: an Indexed Job whose parallelism and completions are the world
 * size the rank command gets, the join string from a Secret mounted as a file
 * (never argv, never an environment literal), a headless Service that selects
 * the Job's pods and is their subdomain, a restart policy under which a
 * failed rank comes back with its index, and one gateway with the rank port.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { Job } from "kubernetes-models/batch/v1/Job";
import { Service } from "kubernetes-models/v1/Service";
import { describe, expect, it } from "vitest";
import { parseYamlDocuments } from "../helpers/mini-yaml.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const DIR = join(REPO, "deploy/k8s");
const README = readFileSync(join(REPO, "README.md"), "utf8");

/** The kinds the manifests may hold, by `apiVersion/kind`. */
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "batch/v1/Job": Job,
  "v1/Service": Service,
};

interface Doc {
  file: string;
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec: any;
}

const files = readdirSync(DIR).filter((name) => /\.ya?ml$/.test(name));
const docs: Doc[] = files.flatMap((file) => parseYamlDocuments(readFileSync(join(DIR, file), "utf8")).map((doc) => ({ ...(doc as Omit<Doc, "file">), file })));

function only(kind: string, predicate: (doc: Doc) => boolean = () => true): Doc {
  const found = docs.filter((doc) => doc.kind === kind && predicate(doc));
  expect(found, `exactly one ${kind}`).toHaveLength(1);
  return found[0]!;
}

function envValue(container: any, name: string): any {
  return (container.env ?? []).find((e: any) => e.name === name);
}

describe("deploy/k8s manifests", () => {
  it("parse, and every document is valid against its kind's Kubernetes schema", () => {
    expect(files.sort()).toEqual(["gateway.yaml", "ranks.yaml"]);
    expect(docs.map((d) => `${d.file}: ${d.kind}`)).toEqual(["gateway.yaml: Deployment", "gateway.yaml: Service", "ranks.yaml: Service", "ranks.yaml: Job"]);
    for (const doc of docs) {
      const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
      expect(Model, `${doc.file}: no model for ${doc.apiVersion} ${doc.kind}`).toBeDefined();
      const { file: _file, ...manifest } = doc;
      expect(() => new Model!(manifest).validate(), `${doc.file}: ${doc.kind} ${doc.metadata.name}`).not.toThrow();
    }
  });

  it("the schema check bites: a wrong type or a missing container is refused", () => {
    const job = only("Job");
    const { file: _file, ...manifest } = job;
    const broken = structuredClone(manifest);
    broken.spec.completions = "4";
    expect(() => new Job(broken).validate()).toThrow(/completions/);
    const empty = structuredClone(manifest);
    delete empty.spec.template.spec.containers;
    expect(() => new Job(empty).validate()).toThrow(/containers/);
  });

  it("the ranks are an Indexed Job whose parallelism and completions are the world size the rank command gets", () => {
    const job = only("Job");
    const spec = job.spec;
    expect(spec.completionMode).toBe("Indexed");
    const [container, ...others] = spec.template.spec.containers;
    expect(others).toEqual([]);
    const argv: string[] = [...(container.command ?? []), ...(container.args ?? [])];
    const rankAt = argv.indexOf("rank");
    expect(argv.slice(rankAt - 1, rankAt + 1)).toEqual(["multirank", "rank"]);
    expect(argv[argv.indexOf("--worker") + 1]).toMatch(/\S/);
    const flag = argv.indexOf("--world-size");
    const worldSize = Number(flag >= 0 ? argv[flag + 1] : envValue(container, "MULTIRANK_WORLD_SIZE")?.value);
    expect(Number.isInteger(worldSize) && worldSize > 0, "the world size is given with --world-size or MULTIRANK_WORLD_SIZE").toBe(true);
    expect(spec.completions).toBe(worldSize);
    expect(spec.parallelism).toBe(worldSize);
  });

  it("the join string comes from a Secret mounted as a file: never argv, never an environment literal", () => {
    const job = only("Job");
    const pod = job.spec.template.spec;
    const container = pod.containers[0];
    const argv: string[] = [...(container.command ?? []), ...(container.args ?? [])];
    expect(argv.some((arg) => arg === "--join" || arg.startsWith("--join=") || arg.includes("mrj1."))).toBe(false);
    expect(envValue(container, "MULTIRANK_JOIN")).toBeUndefined();
    expect(JSON.stringify(job)).not.toContain("mrj1.");
    const path: string = envValue(container, "MULTIRANK_JOIN_FILE")?.value;
    expect(path).toMatch(/^\//);
    const mount = (container.volumeMounts ?? []).find((m: any) => path.startsWith(`${m.mountPath.replace(/\/$/, "")}/`));
    expect(mount, "MULTIRANK_JOIN_FILE lies in a mounted volume").toBeDefined();
    expect(mount.readOnly).toBe(true);
    const volume = pod.volumes.find((v: any) => v.name === mount.name);
    expect(volume.secret?.secretName, "the volume is a Secret").toBeTruthy();
    const file = path.slice(mount.mountPath.replace(/\/$/, "").length + 1);
    const items: Array<{ key: string; path: string }> | undefined = volume.secret.items;
    const key = items ? items.find((item) => item.path === file)?.key : file;
    expect(key, "the Secret's key is projected at MULTIRANK_JOIN_FILE").toBeTruthy();
    // Owner-read only (0400, or 0440/0600 at most): the join string holds a secret.
    expect(volume.secret.defaultMode & 0o077 & ~0o040).toBe(0);
    // The README's recipe makes that Secret, with that key, from the gateway's join file.
    expect(README).toContain(`kubectl create secret generic ${volume.secret.secretName} --from-file=${key}=`);
  });

  it("a headless Service selects the Job's pods and is their subdomain", () => {
    const job = only("Job");
    const service = only("Service", (doc) => doc.spec.clusterIP === "None");
    const labels: Record<string, string> = job.spec.template.metadata.labels;
    const selector: Record<string, string> = service.spec.selector;
    expect(Object.keys(selector).length).toBeGreaterThan(0);
    for (const [key, value] of Object.entries(selector)) expect(labels[key], `the Job's pods carry ${key}=${value}`).toBe(value);
    expect(job.spec.template.spec.subdomain).toBe(service.metadata.name);
    expect(service.spec.publishNotReadyAddresses).toBe(true);
  });

  it("a failed rank comes back with its index: restartPolicy OnFailure within the Job's backoff, no pod failure policy", () => {
    const job = only("Job");
    expect(job.spec.template.spec.restartPolicy).toBe("OnFailure");
    // podFailurePolicy needs restartPolicy Never, under which a failed pod is replaced rather than restarted.
    expect(job.spec.podFailurePolicy).toBeUndefined();
    // Every restart counts against backoffLimit: each rank may fail at least once before the Job gives up.
    expect(job.spec.backoffLimit).toBeGreaterThanOrEqual(job.spec.completions);
  });

  it("one gateway, never two runners, with the rank port open and the join file on a volume", () => {
    const deployment = only("Deployment");
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy.type).toBe("Recreate");
    const container = deployment.spec.template.spec.containers[0];
    const argv: string[] = [...(container.command ?? []), ...(container.args ?? [])];
    expect(argv.slice(argv.indexOf("serve") - 1, argv.indexOf("serve") + 1)).toEqual(["multirank", "serve"]);
    expect(argv[argv.indexOf("--host") + 1]).toBe("0.0.0.0");
    expect(envValue(container, "POD_IP")?.valueFrom?.fieldRef?.fieldPath).toBe("status.podIP");
    const ports = Object.fromEntries(container.ports.map((p: any) => [p.name, p.containerPort]));
    // The README's gateway config: workerPort 29400, joinFile /run/multirank/join, workerAddr process.env.POD_IP.
    expect(ports.ranks).toBe(29400);
    expect(README).toMatch(/workerPort: 29400,[^\n]*\n\s*joinFile: "\/run\/multirank\/join"/);
    expect(container.volumeMounts.map((m: any) => m.mountPath)).toContain("/run/multirank");
    const service = only("Service", (doc) => doc.spec.clusterIP !== "None");
    for (const [key, value] of Object.entries(service.spec.selector as Record<string, string>)) expect(deployment.spec.template.metadata.labels[key]).toBe(value);
  });
});

describe("the manifests' YAML reader (test/helpers/mini-yaml.ts)", () => {
  it("reads block mappings, sequences, mappings in sequences, flow sequences, quotes and documents", () => {
    const text = 'a: 1\nb:\n  - x: "q # not a comment"\n    y: [ "n", \'it\'\'s\' ]\n  - plain text # a comment\nc:\n- 2.5\n---\nd: {}\n';
    expect(parseYamlDocuments(text)).toEqual([{ a: 1, b: [{ x: "q # not a comment", y: ["n", "it's"] }, "plain text"], c: [2.5] }, { d: {} }]);
  });

  it.each([
    ["an anchor", "a: &x 1\n"],
    ["a block scalar", "a: |\n  text\n"],
    ["a YAML 1.1 boolean", "a: yes\n"],
    ["an octal-looking number", "a: 0400\n"],
    ["a duplicate key", "a: 1\na: 2\n"],
    ["a tab in the indentation", "a:\n\t- 1\n"],
    ["stray indentation", "a: 1\n   b: 2\n"],
  ])("refuses %s", (_what, text) => {
    expect(() => parseYamlDocuments(text)).toThrow(/line \d+/);
  });
});
