// The sfdx project under salesforce/ must deploy as it stands: no org can be reached from here, so
// these checks stand in for `sf project deploy start --dry-run`. Every XML file must be well-formed;
// @salesforce/source-deploy-retrieve must resolve the source into components and convert it to
// Metadata API format (what the CLI deploys); manifest/package.xml must name exactly those
// components; and the pieces that refer to each other by name must agree.
import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ComponentSet, MetadataConverter } from '@salesforce/source-deploy-retrieve';

const root = join(import.meta.dirname, '..', '..', 'salesforce');
const forceApp = join(root, 'force-app');
const main = join(forceApp, 'main', 'default');
const OBJECTS = ['Account', 'Contact', 'Lead', 'Opportunity', 'Case'];

function filesUnder(dir: string, pattern: RegExp): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && pattern.test(entry.name))
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

const read = (path: string): string => readFileSync(path, 'utf8');

// fast-xml-parser arrives with source-deploy-retrieve; if a future install stops hoisting it,
// fall back to a tag-balance check rather than skip the test.
type Validator = (xml: string) => string | undefined;
async function loadValidator(): Promise<Validator> {
  const specifier = 'fast-xml-parser';
  try {
    const { XMLValidator } = (await import(specifier)) as {
      XMLValidator: { validate(xml: string): true | { err: { msg: string; line: number } } };
    };
    return (xml) => {
      const result = XMLValidator.validate(xml);
      return result === true ? undefined : `line ${result.err.line}: ${result.err.msg}`;
    };
  } catch {
    return balancedTags;
  }
}

function balancedTags(xml: string): string | undefined {
  if (!xml.startsWith('<?xml')) return 'no XML declaration';
  const body = xml.replace(/<\?[\s\S]*?\?>|<!--[\s\S]*?-->/g, '');
  const stack: string[] = [];
  for (const match of body.matchAll(/<(\/?)([A-Za-z_][\w:.-]*)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = match;
    if (selfClosing) continue;
    if (!closing) stack.push(name!);
    else if (stack.pop() !== name) return `unexpected </${name}>`;
  }
  return stack.length === 0 ? undefined : `unclosed <${stack.at(-1)}>`;
}

t.test('every metadata XML file is well-formed', async (t) => {
  const files = filesUnder(root, /\.xml$/);
  t.ok(files.length >= 50, `${files.length} XML files`);
  for (const [name, validate] of [
    ['fast-xml-parser', await loadValidator()],
    ['fallback', balancedTags],
  ] as const) {
    for (const file of files) t.equal(validate(read(file)), undefined, `${name}: ${relative(root, file)}`);
    // Negative controls: each validator does reject broken XML.
    t.ok(validate('<?xml version="1.0"?><ApexClass><status>Active</ApexClass>'), `${name}: mismatched tag rejected`);
    t.ok(validate('<?xml version="1.0"?><a><b></a>'), `${name}: unclosed tag rejected`);
  }
});

t.test('source-deploy-retrieve resolves a deployable component set', async (t) => {
  const set = ComponentSet.fromSource(forceApp);
  set.sourceApiVersion = '62.0';
  const components = set.getSourceComponents().toArray();
  const byType = new Map<string, string[]>();
  for (const component of components) {
    byType.set(component.type.name, [...(byType.get(component.type.name) ?? []), component.fullName]);
  }

  const expected: Record<string, string[]> = {
    ApexTrigger: OBJECTS.map((object) => `Sfmirror${object}Trigger`),
    CustomObject: ['Sfmirror_Config__mdt', 'Sfmirror_Outbox__c'],
    CustomMetadata: ['Sfmirror_Config.Default'],
    CustomTab: ['Sfmirror_Outbox__c'],
    NamedCredential: ['Sfmirror'],
    ExternalCredential: ['Sfmirror'],
    PermissionSet: ['Sfmirror_Integration', 'Sfmirror_Publisher'],
    PlatformEventChannelMember: OBJECTS.map((object) => `ChangeEvents_${object}ChangeEvent`),
  };
  for (const [type, names] of Object.entries(expected)) {
    t.same([...(byType.get(type) ?? [])].sort(), [...names].sort(), type);
  }
  const classes = byType.get('ApexClass') ?? [];
  for (const name of ['SfmirrorTriggerHandler', 'SfmirrorPushJob', 'SfmirrorOutbox', 'SfmirrorOutboxSweep', 'SfmirrorSigner']) {
    t.ok(classes.includes(name), `ApexClass ${name}`);
  }
  t.equal(classes.length, filesUnder(main, /\.cls$/).length, 'every .cls has its -meta.xml');

  const outbox = components.find((c) => c.type.name === 'CustomObject' && c.fullName === 'Sfmirror_Outbox__c');
  const children = (outbox?.getChildren() ?? []).map((c) => `${c.type.name}:${c.fullName}`);
  t.ok(children.includes('CustomField:Sfmirror_Outbox__c.Body__c'), 'outbox fields are children of the object');
  t.ok(children.includes('ListView:Sfmirror_Outbox__c.Failed'), 'with the Failed list view');

  // Converting to Metadata API format is what `sf project deploy start` does before it uploads.
  const out = mkdtempSync(join(tmpdir(), 'sfmirror-mdapi-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const result = await new MetadataConverter().convert(set, 'metadata', {
    type: 'directory',
    outputDirectory: out,
    genUniqueDir: false,
  });
  t.ok(result.packagePath, 'converted');
  const object = read(join(result.packagePath!, 'objects', 'Sfmirror_Outbox__c.object'));
  t.match(object, /<fullName>Status__c<\/fullName>/, 'fields recomposed into the object');
  t.match(object, /<listViews>[\s\S]*<fullName>Failed<\/fullName>/, 'list view recomposed into the object');
});

t.test('manifest/package.xml names exactly the components in the source', async (t) => {
  const set = ComponentSet.fromSource(forceApp);
  set.sourceApiVersion = '62.0';
  const fromSource = (await set.getObject()).Package;
  const manifest = read(join(root, 'manifest', 'package.xml'));
  const listed = new Map<string, string[]>();
  for (const [, block] of manifest.matchAll(/<types>([\s\S]*?)<\/types>/g)) {
    const name = /<name>([^<]+)<\/name>/.exec(block!)?.[1] ?? '';
    listed.set(name, [...block!.matchAll(/<members>([^<]+)<\/members>/g)].map((m) => m[1]!).sort());
  }
  const expected = new Map(fromSource.types.map((type) => [type.name, [...type.members].sort()]));
  t.same(Object.fromEntries(listed), Object.fromEntries(expected));
  t.match(manifest, /<version>62\.0<\/version>/);
  for (const type of [
    'ApexClass',
    'ApexTrigger',
    'CustomObject',
    'CustomField',
    'ListView',
    'NamedCredential',
    'ExternalCredential',
    'PlatformEventChannelMember',
    'PermissionSet',
    'CustomTab',
    'CustomMetadata',
  ]) {
    t.ok(listed.has(type), `lists ${type}`);
  }
});

t.test('API version 62.0 everywhere', async (t) => {
  t.equal(JSON.parse(read(join(root, 'sfdx-project.json'))).sourceApiVersion, '62.0');
  for (const file of filesUnder(main, /\.(cls|trigger)-meta\.xml$/)) {
    t.match(read(file), /<apiVersion>62\.0<\/apiVersion>[\s\S]*<status>Active<\/status>/, relative(root, file));
  }
});

t.test('CDC is enabled on the standard channel for every object with a trigger', async (t) => {
  const triggered = filesUnder(main, /\.trigger$/).map((file) => /trigger \w+ on (\w+)/.exec(read(file))?.[1]);
  t.same([...triggered].sort(), [...OBJECTS].sort());
  for (const object of OBJECTS) {
    const member = read(join(main, 'platformEventChannelMembers', `ChangeEvents_${object}ChangeEvent.platformEventChannelMember-meta.xml`));
    t.match(member, /<eventChannel>ChangeEvents<\/eventChannel>/, object);
    t.match(member, new RegExp(`<selectedEntity>${object}ChangeEvent</selectedEntity>`), object);
  }
});

t.test('credential, principal and permission sets refer to each other correctly', async (t) => {
  const named = read(join(main, 'namedCredentials', 'Sfmirror.namedCredential-meta.xml'));
  t.match(named, /<namedCredentialType>SecuredEndpoint<\/namedCredentialType>/);
  t.match(
    named,
    /<parameterType>Url<\/parameterType>\s*<parameterValue>https:\/\/sfmirror\.example\.com<\/parameterValue>/,
    'URL placeholder',
  );
  t.match(named, /<externalCredential>Sfmirror<\/externalCredential>/, 'uses the Sfmirror external credential');
  t.match(named, /<generateAuthorizationHeader>false<\/generateAuthorizationHeader>/, 'the signature is the authentication');

  const external = read(join(main, 'externalCredentials', 'Sfmirror.externalCredential-meta.xml'));
  const principal = /<parameterName>(\w+)<\/parameterName>\s*<parameterType>NamedPrincipal<\/parameterType>/.exec(external)?.[1];
  t.equal(principal, 'Publisher', 'one named principal');
  t.notMatch(external, /AuthParameter|AuthHeader/, 'no secret in the external credential');

  for (const name of ['Sfmirror_Integration', 'Sfmirror_Publisher']) {
    const permissionSet = read(join(main, 'permissionsets', `${name}.permissionset-meta.xml`));
    t.match(
      permissionSet,
      new RegExp(`<externalCredentialPrincipal>Sfmirror-${principal}</externalCredentialPrincipal>`),
      `${name} may call out`,
    );
  }
  const integration = read(join(main, 'permissionsets', 'Sfmirror_Integration.permissionset-meta.xml'));
  t.match(integration, /<name>ApiEnabled<\/name>/);
  for (const object of OBJECTS) {
    t.match(
      integration,
      new RegExp(
        `<allowRead>true</allowRead>\\s*<modifyAllRecords>false</modifyAllRecords>\\s*<object>${object}</object>\\s*<viewAllRecords>true</viewAllRecords>`,
      ),
      `${object}: read + View All (CDC)`,
    );
  }
  t.match(integration, /<tab>Sfmirror_Outbox__c<\/tab>\s*<visibility>Visible<\/visibility>/);
  const outboxFields = filesUnder(join(main, 'objects', 'Sfmirror_Outbox__c', 'fields'), /\.field-meta\.xml$/).map(
    (file) => `Sfmirror_Outbox__c.${/(\w+)\.field-meta\.xml$/.exec(file)![1]}`,
  );
  for (const field of outboxFields) t.match(integration, `<field>${field}</field>`, `field permission ${field}`);
  const classes = [...integration.matchAll(/<apexClass>(\w+)<\/apexClass>/g)].map((m) => m[1]!);
  for (const name of classes) t.ok(filesUnder(main, new RegExp(`^${name}\\.cls$`)).length === 1, `class ${name} exists`);
});

t.test('the outbox keeps its documented states and a Failed list view', async (t) => {
  const status = read(join(main, 'objects', 'Sfmirror_Outbox__c', 'fields', 'Status__c.field-meta.xml'));
  const values = [...status.matchAll(/<fullName>(\w+)<\/fullName>\s*<default>/g)].map((m) => m[1]);
  t.same(values, ['Pending', 'Sent', 'Failed']);
  const body = read(join(main, 'objects', 'Sfmirror_Outbox__c', 'fields', 'Body__c.field-meta.xml'));
  t.match(body, /<length>131072<\/length>\s*[\s\S]*<type>LongTextArea<\/type>/);
  const failed = read(join(main, 'objects', 'Sfmirror_Outbox__c', 'listViews', 'Failed.listView-meta.xml'));
  t.match(failed, /<field>Status__c<\/field>\s*<operation>equals<\/operation>\s*<value>Failed<\/value>/);
  t.match(failed, /<columns>Last_Error_Summary__c<\/columns>/);
});
