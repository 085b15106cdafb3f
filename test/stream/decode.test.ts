import t from 'tap';
import { decodeCdcEvent, flatName, replayTieBreak } from '../../src/changes/cdc-event.ts';
import { makeVersion } from '../../src/changes/version.ts';

// Fixtures in the shape CometD delivers (`data` of /data/ChangeEvents), per Salesforce's CDC guide.
const ACC = '001000000000001AAA';
const ACC2 = '001000000000002AAA';
const header = (h: Record<string, unknown>) => ({
  entityName: 'Account',
  recordIds: [ACC],
  changeType: 'UPDATE',
  changeOrigin: 'com/salesforce/api/soap/62.0;client=x',
  transactionKey: '0002343d-9d90-e395-ed20-cf416ba652ad',
  sequenceNumber: 1,
  commitTimestamp: 1710072000123,
  commitNumber: 10923418032367,
  commitUser: '005000000000001AAA',
  changedFields: [],
  ...h,
});
const event = (payload: Record<string, unknown>, replayId: number | string = 4711) => ({
  schema: 'IeRuaY6cbI_HsV8Rv1Mc5g',
  payload,
  event: { replayId },
});

t.test('CREATE carries all non-empty fields; compound address flattened', async (t) => {
  const r = decodeCdcEvent(
    event({
      ChangeEventHeader: header({ changeType: 'CREATE' }),
      Name: 'Acme',
      AnnualRevenue: 12.5,
      IsPartner__c: true,
      BillingAddress: { Street: '1 Main St', City: 'Paris', PostalCode: '75001', Country: 'France', State: null },
      CreatedDate: '2024-03-10T12:00:00.000Z',
      LastModifiedDate: '2024-03-10T12:00:00.000Z',
    }),
  );
  t.ok(r.ok);
  if (!r.ok) return;
  t.equal(r.event.changes.length, 1);
  const c = r.event.changes[0]!;
  t.equal(c.operation, 'insert');
  t.equal(c.id, ACC);
  t.same(c.fields, {
    Name: 'Acme',
    AnnualRevenue: 12.5,
    IsPartner__c: true,
    BillingStreet: '1 Main St',
    BillingCity: 'Paris',
    BillingPostalCode: '75001',
    BillingCountry: 'France',
    BillingState: null,
    CreatedDate: '2024-03-10T12:00:00.000Z',
    LastModifiedDate: '2024-03-10T12:00:00.000Z',
  });
  t.equal(c.version, makeVersion(1710072000123, 4711), 'version: commitTimestamp + replayId tie-break');
  t.equal(r.event.header.commitNumber, '10923418032367', 'commitNumber kept as a string');
});

t.test('UPDATE: only changed fields, explicit null clears, components filtered by changedFields', async (t) => {
  const r = decodeCdcEvent(
    event({
      ChangeEventHeader: header({ changedFields: ['Phone', 'BillingAddress.City', 'LastModifiedDate'], someNewHeaderKey: { x: 1 } }),
      Phone: null,
      BillingAddress: { City: 'Lyon', Street: null },
      LastModifiedDate: '2024-03-10T12:05:00.000Z',
    }),
  );
  t.ok(r.ok);
  if (!r.ok) return;
  t.same(r.event.changes[0]!.fields, { Phone: null, BillingCity: 'Lyon', LastModifiedDate: '2024-03-10T12:05:00.000Z' });
  t.equal(r.event.changes[0]!.operation, 'update');
});

t.test('Contact Name compound and geolocation', async (t) => {
  const r = decodeCdcEvent(
    event({
      ChangeEventHeader: header({ entityName: 'Contact', recordIds: ['003000000000001AAA'], changeType: 'CREATE' }),
      Name: { Salutation: 'Ms.', FirstName: 'Ada', LastName: 'Lovelace' },
      MailingAddress: { City: 'London' },
      Loc__c: { Latitude: 1.5, Longitude: 2.5 },
    }),
  );
  t.ok(r.ok);
  if (!r.ok) return;
  t.same(r.event.changes[0]!.fields, {
    Salutation: 'Ms.',
    FirstName: 'Ada',
    LastName: 'Lovelace',
    MailingCity: 'London',
    Loc__Latitude__s: 1.5,
    Loc__Longitude__s: 2.5,
  });
  t.equal(flatName('Address', 'Street'), 'Street', 'Lead Address has no prefix');
});

t.test('DELETE and UNDELETE; several recordIds', async (t) => {
  const d = decodeCdcEvent(event({ ChangeEventHeader: header({ changeType: 'DELETE', recordIds: [ACC, '001000000000002'] }) }));
  t.ok(d.ok);
  if (!d.ok) return;
  t.same(
    d.event.changes.map((c) => [c.operation, c.id, c.fields]),
    [
      ['delete', ACC, {}],
      ['delete', ACC2, {}],
    ],
    '15-char ids become 18',
  );
  t.equal(d.event.changes[0]!.version, makeVersion(1710072000123, 4711), 'deletes on the same clock');
  const late = decodeCdcEvent(event({ ChangeEventHeader: header({}), LastModifiedDate: '2024-03-10T12:00:01.000Z' }));
  t.ok(late.ok && late.event.changes[0]!.version === makeVersion(1710072001000, 4711), 'a later LastModifiedDate wins (skew)');
  const u = decodeCdcEvent(
    event({ ChangeEventHeader: header({ changeType: 'UNDELETE' }), Name: 'Back', LastModifiedDate: '2024-03-10T13:00:00.000Z' }),
  );
  t.ok(u.ok && u.event.changes[0]!.operation === 'undelete' && u.event.changes[0]!.fields.Name === 'Back');
});

t.test('{ diff } long text becomes a REST re-read', async (t) => {
  const r = decodeCdcEvent(
    event({
      ChangeEventHeader: header({ changedFields: ['Description'] }),
      Description: { diff: '--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y' },
      LastModifiedDate: '2024-03-10T12:05:00.000Z',
    }),
  );
  t.ok(r.ok);
  if (!r.ok) return;
  t.same(r.event.changes[0]!.fields, { LastModifiedDate: '2024-03-10T12:05:00.000Z' });
  t.same(
    r.event.refetch.map((f) => [f.object, f.ids, f.fields]),
    [['Account', [ACC], ['Description']]],
  );
});

t.test('GAP events re-read whole records; GAP_OVERFLOW and wildcards resync the object', async (t) => {
  for (const type of ['GAP_CREATE', 'GAP_UPDATE', 'GAP_DELETE', 'GAP_UNDELETE']) {
    const r = decodeCdcEvent(event({ ChangeEventHeader: header({ changeType: type, recordIds: [ACC, ACC2] }) }));
    t.ok(r.ok && r.event.changes.length === 0 && r.event.refetch[0]!.fields === undefined && r.event.refetch[0]!.ids.length === 2, type);
  }
  const o = decodeCdcEvent(event({ ChangeEventHeader: header({ changeType: 'GAP_OVERFLOW', recordIds: ['000000000000000AAA'] }) }));
  t.ok(o.ok && o.event.resync?.reason === 'GAP_OVERFLOW' && o.event.resync.object === 'Account');
  const w = decodeCdcEvent(event({ ChangeEventHeader: header({ recordIds: ['001*'] }), Name: 'x' }));
  t.ok(w.ok && w.event.resync?.object === 'Account' && w.event.changes.length === 0);
});

t.test('bad events are refused with a reason, keeping the replayId', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [null, /no payload/],
    [event({ ChangeEventHeader: header({}) }, 'x'), /replayId/],
    [event({}), /ChangeEventHeader/],
    [event({ ChangeEventHeader: header({ entityName: 'Bad Name' }) }), /entityName/],
    [event({ ChangeEventHeader: header({ changeType: 'MERGE' }) }), /unknown changeType/],
    [event({ ChangeEventHeader: header({ recordIds: ['nope'] }) }), /not a Salesforce id/],
    [event({ ChangeEventHeader: header({ commitTimestamp: 'soon' }) }), /commitTimestamp/],
    [event({ ChangeEventHeader: header({}), Tags: [1, 2] }), /not a scalar/],
  ];
  for (const [data, re] of cases) {
    const r = decodeCdcEvent(data);
    t.notOk(r.ok);
    if (!r.ok) t.match(r.error, re);
  }
});

t.test('replayId tie-break: big and string replayIds, never as unsafe numbers', async (t) => {
  t.equal(replayTieBreak(4711), 4711);
  t.equal(replayTieBreak('123456789012345678'), 789012345678);
  t.equal(replayTieBreak(2 ** 40 + 3), (2 ** 40 + 3) % 10 ** 12);
  const r = decodeCdcEvent(
    event({ ChangeEventHeader: header({ commitNumber: '18446744073709551615' }), Name: 'x' }, '99999999999999999999'),
  );
  t.ok(r.ok && r.event.header.commitNumber === '18446744073709551615' && r.event.replayId === '99999999999999999999');
});
