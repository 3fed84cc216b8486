// Checks rendered Kubernetes manifests (`kubectl kustomize` output) against the Kubernetes API
// as published by the npm package kubernetes-models (generated from Kubernetes' OpenAPI spec):
//
//   1. JSON schema: every object validates with its model's validate() (types, required
//      fields, enums, formats such as quantities and int-or-string);
//   2. no unknown fields: every object, as an object literal typed with the model's TypeScript
//      interface, must compile with the TypeScript compiler (excess property checks reject
//      fields the API does not have, which the schema alone lets through, as the API server's
//      strict field validation would).
//
// An object of a kind the package does not know fails: nothing is skipped.
//
//   node validate.mjs FILE.yaml...    (run from the folder holding its node_modules)
//
// Prints one line per object checked and every problem; exits 1 when any file has one.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { parseAllDocuments } from "yaml";

const here = path.dirname(fileURLToPath(import.meta.url));

// "apps/v1" -> "apps/v1", core "v1" -> "v1": the package's module path for a group version.
function modulePath(apiVersion, kind) {
  return `kubernetes-models/${apiVersion}/${kind}`;
}

function describe(file, object) {
  const ns = object?.metadata?.namespace ? `${object.metadata.namespace}/` : "";
  return `${path.basename(file)}: ${object?.kind ?? "?"} ${ns}${object?.metadata?.name ?? "?"}`;
}

async function loadObjects(files) {
  const objects = [];
  const problems = [];
  for (const file of files) {
    const documents = parseAllDocuments(fs.readFileSync(file, "utf8"));
    for (const document of documents) {
      if (document.errors.length > 0) {
        problems.push(`${file}: YAML: ${document.errors.map((e) => e.message).join("; ")}`);
        continue;
      }
      const object = document.toJS();
      if (object === null) continue;
      objects.push({ file, object, name: describe(file, object) });
    }
  }
  return { objects, problems };
}

// 1. The JSON schema of each object's model.
async function checkSchemas(objects, problems) {
  for (const entry of objects) {
    const { apiVersion, kind } = entry.object;
    if (typeof apiVersion !== "string" || typeof kind !== "string") {
      problems.push(`${entry.name}: no apiVersion/kind`);
      entry.known = false;
      continue;
    }
    let model;
    try {
      model = (await import(modulePath(apiVersion, kind)))[kind];
    } catch {
      model = undefined;
    }
    if (typeof model !== "function") {
      problems.push(`${entry.name}: ${apiVersion} ${kind} is not a Kubernetes API kind`);
      entry.known = false;
      continue;
    }
    entry.known = true;
    try {
      new model(entry.object).validate();
    } catch (error) {
      problems.push(`${entry.name}: schema: ${error.message}`);
    }
  }
}

// 2. Unknown fields, through TypeScript's excess property checks on object literals.
function checkFields(objects, problems) {
  const known = objects.filter((entry) => entry.known);
  if (known.length === 0) return;
  const lines = [];
  const spans = [];  // [first line, last line, entry]
  known.forEach((entry, i) => {
    const { apiVersion, kind } = entry.object;
    lines.push(`import type { I${kind} as T${i} } from "${modulePath(apiVersion, kind)}";`);
  });
  known.forEach((entry, i) => {
    const first = lines.length;
    const body = JSON.stringify(entry.object, null, 2).split("\n");
    lines.push(`export const object${i}: T${i} = ${body[0]}`, ...body.slice(1));
    lines[lines.length - 1] += ";";
    spans.push([first, lines.length - 1, entry]);
  });
  const source = path.join(here, `.check-${process.pid}.ts`);
  fs.writeFileSync(source, lines.join("\n") + "\n");
  try {
    const program = ts.createProgram([source], {
      noEmit: true,
      strict: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: [],
    });
    for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
      const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n  ");
      if (diagnostic.file === undefined || diagnostic.start === undefined) {
        problems.push(`fields: ${message}`);
        continue;
      }
      const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
      const span = spans.find(([first, last]) => line >= first && line <= last);
      const where = span ? span[2].name : `${path.basename(diagnostic.file.fileName)}:${line + 1}`;
      const text = span ? `  at: ${lines[line].trim()}` : "";
      problems.push(`${where}: fields: ${message}\n${text}`);
    }
  } finally {
    fs.rmSync(source, { force: true });
  }
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE.yaml...");
  process.exit(2);
}
const { objects, problems } = await loadObjects(files);
await checkSchemas(objects, problems);
checkFields(objects, problems);
for (const entry of objects) console.log(`checked ${entry.name}`);
for (const problem of problems) console.error(`INVALID ${problem}`);
console.log(`${objects.length} objects in ${files.length} files, ${problems.length} problems`);
process.exit(problems.length === 0 ? 0 : 1);
