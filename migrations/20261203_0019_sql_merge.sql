-- The mirror's merge rule (src/mirror/merge.ts, "newer wins, per field") where the data is, so a
-- batch is one INSERT/UPDATE per table instead of read, merge in Node, write back.
--
-- A record is a set of last-writer-wins registers: one per field, plus one for "deleted".
-- Stored: _sfm_fields = { Id, <field>: value ..., IsDeleted }, _sfm_version = { d, v, f } where d is
-- the deleted register's version, v the version of every field not listed in f, and
-- f = { version: [fields] } the exceptions (merge.ts: encodeVersions / decodeState).
-- The incoming side is a batch's changes of one record already merged with each other (a delta in
-- the same encoding, without Id and IsDeleted in its fields).
--
-- A field's write replaces the stored one when its version is newer; at an equal version the larger
-- value wins, values compared as JSON text in byte order (merge.ts compares JSON.stringify output;
-- the two agree except for numbers JavaScript writes with an exponent and characters above U+FFFF
-- against U+E000..U+FFFF). For "deleted", true beats false at an equal version.
--
-- Returns the merged record, whether anything changed, and `won`: the incoming fields that
-- replaced the stored ones (null: all of them), which tells the caller which typed columns to take.
create function sfmirror.merge_record(
  old_fields jsonb, old_version jsonb, old_deleted boolean,
  rec_id text, in_fields jsonb, in_version jsonb, in_deleted boolean,
  out fields jsonb, out version jsonb, out deleted boolean, out won text[], out changed boolean)
language plpgsql immutable parallel safe as $$
declare
  old_dv text collate "C" := old_version->>'d';
  in_dv text collate "C" := in_version->>'d';
  old_max text collate "C";
  old_min text collate "C";
  in_min text collate "C";
  in_max text collate "C";
  dchanged boolean;
  common text collate "C";
  fobj jsonb;
begin
  if old_version is null or old_dv is null then
    -- A record new to the mirror (or never written by a change): the incoming delta as it is.
    fields := in_fields || jsonb_build_object('Id', rec_id, 'IsDeleted', in_deleted);
    version := in_version;
    deleted := in_deleted;
    won := null;
    changed := true;
    return;
  end if;

  select max(x), min(x) into old_max, old_min from (
    select old_dv union all select old_version->>'v'
    union all select jsonb_object_keys(case when old_version ? 'f' then old_version->'f' else '{}' end)) s(x);
  select max(x), min(x) into in_max, in_min from (
    select in_dv union all select in_version->>'v'
    union all select jsonb_object_keys(case when in_version ? 'f' then in_version->'f' else '{}' end)) s(x);

  if in_max < old_min and not exists (select 1 from jsonb_object_keys(in_fields) k where not old_fields ? k) then
    -- Every incoming register is older than every stored one: nothing to do (late echoes).
    changed := false;
    return;
  end if;

  if in_min > old_max and not exists (
      select 1 from jsonb_object_keys(old_fields) k where k not in ('Id', 'IsDeleted') and not in_fields ? k) then
    -- The common case: a newer change that carries every field the record has.
    fields := old_fields || in_fields || jsonb_build_object('IsDeleted', in_deleted);
    version := in_version;
    deleted := in_deleted;
    won := null;
    changed := true;
    return;
  end if;

  -- The general case, field by field.
  if in_dv > old_dv or (in_dv = old_dv and in_deleted and not old_deleted) then
    deleted := in_deleted;
    dchanged := in_dv <> old_dv or in_deleted <> old_deleted;
  else
    deleted := old_deleted;
    in_dv := old_dv;
    dchanged := false;
  end if;

  with o as (
    select k, old_fields->k as val, coalesce(x.ver, old_version->>'v') collate "C" as ver
    from jsonb_object_keys(old_fields) k
    left join (select e.key as ver, jsonb_array_elements_text(e.value) as name
               from jsonb_each(case when old_version ? 'f' then old_version->'f' else '{}' end) e) x on x.name = k
    where k not in ('Id', 'IsDeleted')),
  n as (
    select k, in_fields->k as val, coalesce(x.ver, in_version->>'v') collate "C" as ver
    from jsonb_object_keys(in_fields) k
    left join (select e.key as ver, jsonb_array_elements_text(e.value) as name
               from jsonb_each(case when in_version ? 'f' then in_version->'f' else '{}' end) e) x on x.name = k),
  j as (
    select coalesce(n.k, o.k) as k,
      o.k is null or (n.k is not null and (n.ver > o.ver or (n.ver = o.ver and n.val::text collate "C" > o.val::text collate "C"))) as w,
      n.val as nval, n.ver as nver, o.val as oval, o.ver as over_
    from n full join o on o.k = n.k),
  r as (select k, w, case when w then nval else oval end as val, case when w then nver else over_ end as ver from j),
  c as (select ver from r group by ver order by count(*) desc, ver desc limit 1)
  select coalesce(jsonb_object_agg(r.k, r.val), '{}'), coalesce(array_agg(r.k) filter (where r.w), '{}'), (select ver from c),
    (select jsonb_object_agg(ver, names) from (select ver, jsonb_agg(k order by k) as names from r where ver <> (select ver from c) group by ver) z)
  into fields, won, common, fobj
  from r;

  fields := fields || jsonb_build_object('Id', rec_id, 'IsDeleted', deleted);
  version := jsonb_build_object('d', in_dv)
    || case when common is null then '{}' else jsonb_build_object('v', common) end
    || case when fobj is null then '{}' else jsonb_build_object('f', fobj) end;
  changed := dchanged or cardinality(won) > 0;
end
$$;
