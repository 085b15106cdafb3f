import t from 'tap';
import { decodeApexPush } from '../../src/changes/apex-push.ts';
import { toId18 } from '../../src/changes/names.ts';
import { makeVersion } from '../../src/changes/version.ts';

t.test('ids: 15 characters become 18, checksums are checked', async (t) => {
  t.equal(toId18('001000000000001'), '001000000000001AAA');
  t.equal(toId18('0015g00000ABCDe'), toId18('0015g00000ABCDe')!);
  t.equal(toId18('00D000000000001'), '00D000000000001EAA');
  t.equal(toId18('00D000000000001AAA'), undefined, 'wrong checksum');
  t.equal(toId18('001'), undefined);
  t.equal(toId18(12), undefined);
});

t.test('a push decodes into changes; addresses flatten; attributes and IsDeleted are dropped', async (t) => {
  const r = decodeApexPush({
    orgId: '00D000000000001',
    changes: [
      {
        object: 'Account',
        operation: 'update',
        record: {
          attributes: { type: 'Account' },
          Id: '001000000000001',
          SystemModstamp: '2024-03-10T12:00:00.000+0000',
          IsDeleted: false,
          Name: null,
          BillingAddress: { city: 'Paris', postalCode: '75001' },
        },
      },
      { object: 'Account', operation: 'delete', record: { Id: '001000000000002AAA', SystemModstamp: '2024-03-10T12:00:01Z' } },
    ],
    types: { Account: { Name: 'STRING' } },
  });
  t.ok(r.ok);
  if (!r.ok) return;
  t.equal(r.push.orgId, '00D000000000001EAA');
  t.same(r.push.changes[0]!.fields, {
    SystemModstamp: '2024-03-10T12:00:00.000+0000',
    Name: null,
    BillingCity: 'Paris',
    BillingPostalCode: '75001',
  });
  t.equal(r.push.changes[0]!.version, makeVersion(Date.UTC(2024, 2, 10, 12)));
  t.equal(r.push.changes[1]!.operation, 'delete');
  t.same(r.push.types, { Account: { Name: 'string' } }, 'type names in any case');
});

t.test('SF_OBJECTS refuses other objects; every problem is listed', async (t) => {
  const r = decodeApexPush(
    {
      orgId: '00D000000000001EAA',
      changes: [
        { object: 'Lead', operation: 'insert', record: { Id: '00Q000000000001AAA', SystemModstamp: '2024-03-10T12:00:00Z' } },
        { object: 'Account' },
      ],
    },
    { objects: ['Account'] },
  );
  t.notOk(r.ok);
  if (r.ok) return;
  t.match(r.errors[0], /changes\[0\]\.object: Lead is not mirrored here/);
  t.match(r.errors.join('\n'), /changes\[1\]\.operation/);
  t.match(r.errors.join('\n'), /changes\[1\]\.record/);
});
