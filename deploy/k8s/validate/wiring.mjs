// Checks that a rendered kvcluster overlay is wired together (what a schema cannot see):
//   - the router's --workers-dns names the headless worker Service and one of its ports, and
//     the StatefulSet's serviceName is that Service;
//   - every $(VAR) in a container's args is defined by its env or by a ConfigMap it loads
//     through envFrom (Kubernetes leaves an undefined one as literal text), and every such
//     ConfigMap is part of the render;
//   - Services, the PodDisruptionBudget and the Prometheus annotations point at pods and
//     ports that exist; gRPC probes point at the container's gRPC port;
//   - per overlay: cpu/gpu/sim backends, GPU limits and node selector, the sim flag.
//
//   node wiring.mjs OVERLAY FILE.yaml      (OVERLAY: cpu, gpu or sim)
import fs from "node:fs";
import { parseAllDocuments } from "yaml";

const [overlay, file] = process.argv.slice(2);
if (!["cpu", "gpu", "sim"].includes(overlay) || !file) {
  console.error("usage: node wiring.mjs cpu|gpu|sim FILE.yaml");
  process.exit(2);
}
const objects = parseAllDocuments(fs.readFileSync(file, "utf8")).map((d) => d.toJS());
const problems = [];
const expect = (condition, message) => condition || problems.push(message);

const find = (kind, name) => objects.find((o) => o.kind === kind && o.metadata?.name === name);
const matches = (selector, labels) =>
  Object.entries(selector ?? {}).every(([key, value]) => labels?.[key] === value);

const router = find("Deployment", "kvc-router");
const workers = find("StatefulSet", "kvc-worker");
const workerService = find("Service", "kvc-worker");
const routerService = find("Service", "kvc-router");
const budget = find("PodDisruptionBudget", "kvc-worker");
for (const [what, object] of Object.entries({ router, workers, workerService, routerService, budget })) {
  expect(object !== undefined, `missing ${what}`);
}
if (problems.length > 0) finish();

const configMaps = new Map(
  objects.filter((o) => o.kind === "ConfigMap").map((o) => [o.metadata.name, o.data ?? {}]),
);

// Every container of a pod template: its $(VAR) references resolve. Returns the environment
// the main container sees (ConfigMap values and literal env values).
function environment(template, owner) {
  let mainEnv = null;
  const containers = [...(template.spec.initContainers ?? []), ...template.spec.containers];
  for (const container of containers) {
    const env = {};
    for (const source of container.envFrom ?? []) {
      const name = source.configMapRef?.name;
      expect(configMaps.has(name), `${owner}/${container.name}: envFrom ConfigMap ${name} not rendered`);
      Object.assign(env, configMaps.get(name) ?? {});
    }
    for (const variable of container.env ?? []) env[variable.name] = variable.value ?? "(from field)";
    for (const arg of [...(container.command ?? []), ...(container.args ?? [])]) {
      for (const [, name] of arg.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
        expect(name in env, `${owner}/${container.name}: $(${name}) in "${arg}" is not defined`);
      }
    }
    if (container === template.spec.containers[0]) mainEnv = env;
  }
  return mainEnv;
}

const portOf = (container, name) =>
  (container.ports ?? []).find((p) => p.name === name || p.containerPort === name)?.containerPort;

// Router.
const routerPod = router.spec.template;
const routerContainer = routerPod.spec.containers[0];
environment(routerPod, "kvc-router");
const dnsArg = routerContainer.args.find((a) => a.startsWith("--workers-dns="));
expect(dnsArg !== undefined, "router has no --workers-dns");
if (dnsArg) {
  const [host, port] = dnsArg.slice("--workers-dns=".length).split(":");
  expect(host === workerService.metadata.name, `--workers-dns host ${host} is not the worker Service`);
  expect(
    workerService.spec.ports.some((p) => String(p.port) === port),
    `--workers-dns port ${port} is not a port of Service ${workerService.metadata.name}`,
  );
}
expect(routerContainer.livenessProbe?.grpc?.port === portOf(routerContainer, "grpc"),
  "router liveness probe is not gRPC on its gRPC port");
expect(routerContainer.readinessProbe?.grpc?.port === portOf(routerContainer, "grpc") &&
  routerContainer.readinessProbe?.grpc?.service === "kvcluster.v1.Router",
  "router readiness probe is not gRPC on its gRPC port for service kvcluster.v1.Router");
const annotations = routerPod.metadata.annotations ?? {};
expect(annotations["prometheus.io/scrape"] === "true", "router pods lack prometheus.io/scrape");
expect(Number(annotations["prometheus.io/port"]) === portOf(routerContainer, "http"),
  "prometheus.io/port is not the router's HTTP port");
expect(matches(routerService.spec.selector, routerPod.metadata.labels),
  "router Service selects no router pod");

// Workers.
const workerPod = workers.spec.template;
const workerContainer = workerPod.spec.containers[0];
const env = environment(workerPod, "kvc-worker");
expect(workers.spec.serviceName === workerService.metadata.name, "StatefulSet serviceName is not the headless Service");
expect(workerService.spec.clusterIP === "None", "worker Service is not headless");
expect(matches(workerService.spec.selector, workerPod.metadata.labels), "worker Service selects no worker pod");
expect(matches(budget.spec.selector.matchLabels, workerPod.metadata.labels), "PodDisruptionBudget selects no worker pod");
const grpcPort = portOf(workerContainer, "grpc");
for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
  expect(workerContainer[probe]?.grpc?.port === grpcPort, `worker ${probe} is not gRPC on port ${grpcPort}`);
}
expect(workerContainer.args.includes(`--listen=0.0.0.0:${grpcPort}`), "worker does not listen on its gRPC port");
const resources = workerContainer.resources ?? {};
expect(resources.requests?.cpu && resources.requests?.memory, "worker has no cpu/memory requests");

// The overlay's own promises.
const backend = env?.KVC_BACKEND;
const want = { cpu: "cpu", gpu: "cuda", sim: "sim" }[overlay];
expect(backend === want, `KVC_BACKEND is ${backend}, want ${want}`);
const gpus = Number(resources.limits?.["nvidia.com/gpu"] ?? 0);
if (overlay === "gpu") {
  expect(gpus >= 1, "gpu workers have no nvidia.com/gpu limit");
  expect(workerPod.spec.nodeSelector?.["nvidia.com/gpu.present"] === "true", "gpu workers lack the GPU node selector");
  expect(workerContainer.image.startsWith("kvcluster-cuda"), "gpu workers do not run the CUDA image");
} else {
  expect(gpus === 0, `${overlay} workers ask for GPUs`);
}
if (overlay === "sim") {
  expect(workerContainer.args.some((a) => a.startsWith("--sim-speedup=")), "sim workers lack --sim-speedup");
  expect(workers.spec.replicas >= 8, "the sim overlay is meant for a large cluster");
}
finish();

function finish() {
  for (const problem of problems) console.error(`WIRING ${overlay}: ${problem}`);
  console.log(`${overlay}: ${objects.length} objects, ${problems.length} wiring problems`);
  process.exit(problems.length === 0 ? 0 : 1);
}
