// Validates custom resources against the CRD schemas compiled into the @kubernetes-models packages
// (package.json here pins them; deploy/k8s/crds.py installs them into the cache folder and runs this).
//
//   node validate.mjs <node_modules folder>  < documents.json   (a JSON array of resources)
//
// Prints a JSON array with one entry per document: {kind, name, errors: [...]}; exit 0 unless the
// input itself is unreadable.
//
// The compiled validators check types, enums, required fields and patterns, but let unknown fields
// pass: the CRD schemas carry no additionalProperties: false (the API server prunes unknown fields, or
// rejects them under kubectl's strict field validation). So a second check finds fields the schema
// ignores: for every key, the value is swapped for one of another JSON type; a field the schema knows
// then fails validation, a field it ignores does not. Maps whose values are free by design (Strimzi's
// `config`) are listed in FREE_FORM and not probed.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const PACKAGES = {
  "kafka.strimzi.io": "strimzi-kafka-operator",
  "keda.sh": "keda",
  "monitoring.coreos.com": "prometheus-operator",
};

// JSON pointers (per kind) of objects whose keys are not fields: their values are not checked by the
// schema (x-kubernetes-preserve-unknown-fields), so a swapped value passes whether or not the key is real.
const FREE_FORM = {
  Kafka: ["/spec/kafka/config"],
  KafkaTopic: ["/spec/config"],
  KafkaNodePool: [],
  KafkaUser: [],
  ScaledObject: [],
  TriggerAuthentication: [],
  PrometheusRule: [],
  PodMonitor: [],
  ServiceMonitor: [],
};

async function modelClass(modules, apiVersion, kind) {
  const [group, version] = String(apiVersion).split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version) return null;
  const file = join(modules, "@kubernetes-models", pkg, group, version, `${kind}.js`);
  try {
    const module = await import(pathToFileURL(file).href);
    return module[kind] ?? null;
  } catch (error) {
    if (error && error.code === "ERR_MODULE_NOT_FOUND") return null;
    throw error;
  }
}

function errorsOf(Model, document) {
  try {
    new Model(document).validate();
    return [];
  } catch (error) {
    return [String(error && error.message ? error.message : error)];
  }
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// Every (pointer, parent, key) of the document, depth first, arrays walked through.
function* keys(value, pointer) {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) yield* keys(value[i], `${pointer}/${i}`);
  } else if (isObject(value)) {
    for (const key of Object.keys(value)) {
      const path = `${pointer}/${key.replaceAll("~", "~0").replaceAll("/", "~1")}`;
      yield { path, parent: value, key, pointer };
      yield* keys(value[key], path);
    }
  }
}

function unknownFields(Model, document, kind) {
  const free = FREE_FORM[kind] ?? [];
  const found = [];
  const copy = structuredClone(document);
  for (const { path, parent, key, pointer } of keys(copy, "")) {
    if (pointer === "" && (key === "apiVersion" || key === "kind")) continue;
    if (free.some((prefix) => pointer === prefix || pointer.startsWith(`${prefix}/`))) continue;
    if (found.some((known) => path.startsWith(`${known}/`))) continue; // inside an unknown field: reported once
    const original = parent[key];
    parent[key] = isObject(original) ? "\u0000probe" : { "\u0000probe": true };
    const ignored = errorsOf(Model, copy).length === 0;
    parent[key] = original;
    if (ignored) found.push(path);
  }
  return found.map((path) => `${path}: unknown field (the ${kind} schema does not know it)`);
}

async function main() {
  const modules = process.argv[2];
  if (!modules) throw new Error("usage: node validate.mjs <node_modules folder> < documents.json");
  const documents = JSON.parse(readFileSync(0, "utf8"));
  const results = [];
  for (const document of documents) {
    const kind = document && document.kind;
    const name = document && document.metadata && document.metadata.name;
    const Model = await modelClass(modules, document && document.apiVersion, kind);
    if (Model === null) {
      results.push({ kind, name, errors: [`no validator for ${document && document.apiVersion} ${kind}`] });
      continue;
    }
    const errors = errorsOf(Model, document);
    results.push({ kind, name, errors: errors.length ? errors : unknownFields(Model, document, kind) });
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(2);
});
