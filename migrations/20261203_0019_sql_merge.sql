-- The mirror's merge rule (src/mirror/merge.ts, "newer wins, per field") where the data is, so a
-- batch is one statement per table instead of read, merge in Node, write back.
--
-- A record is a set of last-writer-wins registers: one per field, plus one for "deleted".
-- Stored: _sfm_fields = { Id, <field>: value ..., IsDeleted }, _sfm_version = { d, v, x } where d is
-- the deleted register's version (every change writes it, so d is also the record's newest
-- version), v the version of every field not listed in x, and x = { field: version } the exceptions
-- (merge.ts: encodeVersions / decodeState). Rows written before this migration may carry the older
-- grouped form f = { version: [fields] } instead of x; they are read as such and rewritten as x.
-- The incoming side is a batch's changes of one record already merged with each other (a delta in
-- the same encoding, without Id and IsDeleted in its fields), with its field names and its oldest
-- version, so the common cases below are plain expressions (no query per row).
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
  rec_id text, in_fields jsonb, in_version jsonb, in_deleted boolean, in_keys text[], in_min text,
  out fields jsonb, out version jsonb, out deleted boolean, out won text[], out changed boolean)
language plpgsql immutable parallel safe as $$
declare
  old_dv text collate "C" := old_version->>'d';
  in_dv text collate "C" := in_version->>'d';
  v text collate "C";
  x jsonb;
  k text;
  nv text collate "C";
  ov text collate "C";
  dchanged boolean;
begin
  if old_version is null or old_dv is null then
    -- A record new to the mirror: the incoming delta as it is.
    fields := in_fields || jsonb_build_object('Id', rec_id, 'IsDeleted', in_deleted);
    version := in_version;
    deleted := in_deleted;
    changed := true;
    return;
  end if;
  if old_version ? 'f' then
    -- The grouped form of rows written before this migration.
    select jsonb_object_agg(n, e.key) into x from jsonb_each(old_version->'f') e, jsonb_array_elements_text(e.value) n;
    old_version := (old_version - 'f') || case when x is null then '{}' else jsonb_build_object('x', x) end;
  end if;

  if in_min collate "C" > old_dv then
    -- Newer than everything stored (the common case): every incoming register wins.
    fields := old_fields || in_fields || jsonb_build_object('IsDeleted', in_deleted);
    deleted := in_deleted;
    changed := true;
    if (old_fields - in_keys - 'Id' - 'IsDeleted') = '{}' then
      version := in_version;
    else
      -- Fields this delta does not carry keep their versions: the incoming ones become exceptions.
      v := old_version->>'v';
      x := coalesce(old_version->'x', '{}') - in_keys;
      foreach k in array in_keys loop
        x := x || jsonb_build_object(k, coalesce(in_version->'x'->>k, in_version->>'v'));
      end loop;
      version := jsonb_build_object('d', in_dv, 'v', v) || case when x = '{}' then '{}' else jsonb_build_object('x', x) end;
    end if;
    return;
  end if;

  if in_version = old_version and in_deleted = old_deleted and old_fields @> in_fields then
    changed := false; -- an identical re-send
    return;
  end if;

  -- The general case, register by register.
  if in_dv > old_dv or (in_dv = old_dv and in_deleted and not old_deleted) then
    deleted := in_deleted;
    dchanged := in_dv <> old_dv or in_deleted <> old_deleted;
  else
    deleted := old_deleted;
    in_dv := old_dv;
    dchanged := false;
  end if;
  fields := old_fields;
  v := old_version->>'v';
  x := coalesce(old_version->'x', '{}');
  won := '{}';
  foreach k in array in_keys loop
    nv := coalesce(in_version->'x'->>k, in_version->>'v');
    ov := case when old_fields ? k then coalesce(x->>k, v) end;
    if ov is null or nv > ov or (nv = ov and (in_fields->k)::text collate "C" > (old_fields->k)::text collate "C") then
      fields := fields || jsonb_build_object(k, in_fields->k);
      if v is null then
        v := nv;
      elsif nv = v then
        x := x - k;
      else
        x := x || jsonb_build_object(k, nv);
      end if;
      won := won || k;
    end if;
  end loop;
  fields := fields || jsonb_build_object('IsDeleted', deleted);
  version := jsonb_build_object('d', in_dv)
    || case when v is null then '{}' else jsonb_build_object('v', v) end
    || case when x = '{}' then '{}' else jsonb_build_object('x', x) end;
  changed := dchanged or cardinality(won) > 0;
end
$$;
