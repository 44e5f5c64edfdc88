//! Table export: each partition of a topic with `silt.table.enable=true`
//! (or the cluster default) is written, in offset order, to Parquet files
//! under `tables/<topic>/date=YYYY-MM-DD/hour=HH/`, partitioned by each
//! record's timestamp (UTC), for query engines that read Hive-partitioned
//! Parquet (DuckDB, Spark, Trino, Athena).
//!
//! Exactly once. A partition's export progress (the next offset to export)
//! is part of the replicated state. One step exports `[from, to)`: it
//! first writes a marker `tables/<topic>/_progress/<name>.json` naming `to`
//! (create-only), then one file per hour the records fall in, each named
//! `<name>.parquet` (create-only), where the name is the partition, `from`
//! and the topic's id; then it proposes
//! `TableExported { from, to }`, which applies only if the progress is
//! still `from`. A step that crashed or raced is redone from its marker:
//! the same range, the same file names; a file already there is kept. So
//! every offset lands in exactly one file name, once, whoever runs the job
//! and however often, and no file is ever left that the table should not
//! hold.
//!
//! Schema (records without a declared schema, like Redpanda's `key_value`
//! mode): `partition` int32, `offset` int64, `timestamp` timestamp(ms, UTC),
//! `timestamp_type` int8 (0 CreateTime, 1 LogAppendTime), `key` and `value`
//! binary (nullable), `headers` list<struct<key string, value binary>>.
//! With `silt.table.value.schema`, JSON values are also decoded into typed
//! columns of those names; a value that does not match goes to a
//! dead-letter file under `dead-letter/<topic>/` with its partition,
//! offset and the reason (its row stays in the table, typed columns null).
//!
//! Files hold at most `file_bytes` of record bytes (zstd compressed, one
//! row group per `ROW_GROUP_ROWS`), or what is there once the oldest
//! record waiting is `max_age` old. Table files outlive the topic's own
//! retention; `silt.table.retention.ms` deletes whole hours of them.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use arrow_array::{
    builder::{BinaryBuilder, ListBuilder, StringBuilder, StructBuilder},
    ArrayRef, BinaryArray, BooleanArray, Float64Array, Int32Array, Int64Array, Int8Array,
    RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use bytes::Bytes;
use object_store::{path::Path as ObjectPath, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::{metadata::KeyValue, properties::WriterProperties},
};
use silt_coordinator::{topic_config::TableField, Command, Outcome, TimestampType, TopicId};

use super::{cleaner::MAX_CLEANER_BATCH_BYTES, Job, JobError, Jobs, Report};
use crate::{batch, records};

/// Object key prefix of table files.
pub const TABLES_PREFIX: &str = "tables/";
/// Object key prefix of dead-letter files.
pub const DEAD_LETTER_PREFIX: &str = "dead-letter/";

/// Rows of one Parquet row group at most.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Objects one retention sweep lists per topic and pass at most (from the
/// oldest hour: those are the ones it deletes).
pub const TABLE_LIST_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy)]
pub struct TableSettings {
    /// Export topics without their own `silt.table.enable`.
    pub enable_default: bool,
    /// Record bytes of one file at most.
    pub file_bytes: u64,
    /// A file is written once the oldest record waiting is this old, even
    /// below `file_bytes`.
    pub max_age: Duration,
}

impl Default for TableSettings {
    fn default() -> Self {
        Self {
            enable_default: false,
            file_bytes: 128 << 20,
            max_age: Duration::from_secs(300),
        }
    }
}

/// A row of a dead-letter file: a value that does not match the table's
/// schema, or a whole batch that cannot be decoded (its raw bytes, at its
/// first offset).
struct DeadRow {
    offset: i64,
    timestamp: i64,
    value: Option<Bytes>,
    error: String,
}

/// One exported record.
struct Row {
    offset: i64,
    timestamp: i64,
    log_append_time: bool,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(Bytes, Option<Bytes>)>,
}

/// (date, hour) of a UTC timestamp in ms: `("2026-11-30", 7)`.
pub fn date_hour(ms: i64) -> (String, u32) {
    let secs = ms.max(0) / 1000;
    let days = secs / 86_400;
    let hour = ((secs % 86_400) / 3600) as u32;
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), hour)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The end (ms) of the hour a table file's key names, if it names one.
fn hour_end_of(key: &str) -> Option<i64> {
    let date = key.split("/date=").nth(1)?.get(..10)?;
    let hour: i64 = key.split("/hour=").nth(1)?.get(..2)?.parse().ok()?;
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    Some((days_from_civil(y, m, d) * 24 + hour + 1) * 3_600_000)
}

/// A step's file name: the partition, where the step begins, and the
/// topic's id (a topic deleted and created again under the same name
/// starts over at offset 0 and must not meet the old topic's names).
fn file_name(id: TopicId, partition: i32, from: i64) -> String {
    format!("{partition:05}-{from:020}-{id}")
}

fn marker_key(topic: &str, id: TopicId, partition: i32, from: i64) -> String {
    format!(
        "{TABLES_PREFIX}{topic}/_progress/{}.json",
        file_name(id, partition, from)
    )
}

/// The Arrow schema of a table with `fields` decoded from JSON values.
pub fn table_schema(fields: &[TableField]) -> Schema {
    let mut columns = vec![
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("timestamp_type", DataType::Int8, false),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new(
            "headers",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(header_fields()),
                true,
            ))),
            false,
        ),
    ];
    for f in fields {
        columns.push(Field::new(&f.name, field_type(&f.kind), true));
    }
    Schema::new(columns)
}

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, true),
    ])
}

fn field_type(kind: &str) -> DataType {
    match kind {
        "int" => DataType::Int32,
        "long" => DataType::Int64,
        "double" => DataType::Float64,
        "boolean" => DataType::Boolean,
        _ => DataType::Utf8,
    }
}

/// A JSON value's fields, typed; or why it does not match the schema.
type Decoded = Vec<Option<serde_json::Value>>;

fn decode_json(value: &[u8], fields: &[TableField]) -> Result<Decoded, String> {
    let v: serde_json::Value =
        serde_json::from_slice(value).map_err(|e| format!("not JSON: {e}"))?;
    let serde_json::Value::Object(map) = v else {
        return Err("not a JSON object".into());
    };
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let x = match map.get(&f.name) {
            None | Some(serde_json::Value::Null) => None,
            Some(x) => {
                let ok = match f.kind.as_str() {
                    "string" => x.is_string(),
                    "int" => x.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                    "long" => x.is_i64(),
                    "double" => x.is_number(),
                    _ => x.is_boolean(),
                };
                if !ok {
                    return Err(format!("field {:?} is not a {}: {x}", f.name, f.kind));
                }
                Some(x.clone())
            }
        };
        out.push(x);
    }
    Ok(out)
}

fn typed_column(kind: &str, values: &[Option<serde_json::Value>]) -> ArrayRef {
    match kind {
        "int" => Arc::new(Int32Array::from_iter(
            values
                .iter()
                .map(|v| v.as_ref().and_then(|v| v.as_i64()).map(|n| n as i32)),
        )),
        "long" => Arc::new(Int64Array::from_iter(
            values.iter().map(|v| v.as_ref().and_then(|v| v.as_i64())),
        )),
        "double" => Arc::new(Float64Array::from_iter(
            values.iter().map(|v| v.as_ref().and_then(|v| v.as_f64())),
        )),
        "boolean" => Arc::new(BooleanArray::from_iter(
            values.iter().map(|v| v.as_ref().and_then(|v| v.as_bool())),
        )),
        _ => Arc::new(StringArray::from_iter(
            values.iter().map(|v| v.as_ref().and_then(|v| v.as_str())),
        )),
    }
}

fn parquet_error(e: impl std::fmt::Display) -> JobError {
    JobError::Corrupt {
        object: "(table file)".into(),
        message: e.to_string(),
    }
}

/// The Parquet bytes of one table file.
fn table_file(
    partition: i32,
    rows: &[&Row],
    fields: &[TableField],
    range: (i64, i64),
) -> Result<Vec<u8>, JobError> {
    let schema = Arc::new(table_schema(fields));
    let mut headers = ListBuilder::new(StructBuilder::new(
        header_fields(),
        vec![
            Box::new(StringBuilder::new()) as Box<dyn arrow_array::builder::ArrayBuilder>,
            Box::new(BinaryBuilder::new()),
        ],
    ))
    .with_field(Arc::new(Field::new(
        "item",
        DataType::Struct(header_fields()),
        true,
    )));
    for r in rows {
        let s = headers.values();
        for (k, v) in &r.headers {
            s.field_builder::<StringBuilder>(0)
                .expect("key builder")
                .append_value(String::from_utf8_lossy(k));
            s.field_builder::<BinaryBuilder>(1)
                .expect("value builder")
                .append_option(v.as_deref());
            s.append(true);
        }
        headers.append(true);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(vec![partition; rows.len()])),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.offset))),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.timestamp))
                .with_timezone("UTC"),
        ),
        Arc::new(Int8Array::from_iter_values(
            rows.iter().map(|r| i8::from(r.log_append_time)),
        )),
        Arc::new(BinaryArray::from_iter(
            rows.iter().map(|r| r.key.as_deref()),
        )),
        Arc::new(BinaryArray::from_iter(
            rows.iter().map(|r| r.value.as_deref()),
        )),
        Arc::new(headers.finish()),
    ];
    if !fields.is_empty() {
        let decoded: Vec<Decoded> = rows
            .iter()
            .map(
                |r| match r.value.as_deref().map(|v| decode_json(v, fields)) {
                    Some(Ok(d)) => d,
                    _ => vec![None; fields.len()],
                },
            )
            .collect();
        for (i, f) in fields.iter().enumerate() {
            let values: Vec<Option<serde_json::Value>> =
                decoded.iter().map(|d| d[i].clone()).collect();
            columns.push(typed_column(&f.kind, &values));
        }
    }
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(parquet_error)?;
    write_parquet(schema, batch, range)
}

fn write_parquet(
    schema: Arc<Schema>,
    batch: RecordBatch,
    (from, to): (i64, i64),
) -> Result<Vec<u8>, JobError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("silt.from".into(), from.to_string()),
            KeyValue::new("silt.to".into(), to.to_string()),
        ]))
        .build();
    let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(parquet_error)?;
    w.write(&batch).map_err(parquet_error)?;
    w.into_inner().map_err(parquet_error)
}

/// The values of `rows` that do not match the schema, as dead-letter rows.
fn json_failures(rows: &[Row], fields: &[TableField]) -> Vec<DeadRow> {
    if fields.is_empty() {
        return Vec::new();
    }
    rows.iter()
        .filter_map(|r| {
            let v = r.value.as_deref()?;
            decode_json(v, fields).err().map(|error| DeadRow {
                offset: r.offset,
                timestamp: r.timestamp,
                value: r.value.clone(),
                error,
            })
        })
        .collect()
}

/// A dead-letter file of `bad` rows.
fn dead_letter_file(
    partition: i32,
    bad: &[&DeadRow],
    range: (i64, i64),
) -> Result<Vec<u8>, JobError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("value", DataType::Binary, true),
        Field::new("error", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(vec![partition; bad.len()])),
        Arc::new(Int64Array::from_iter_values(bad.iter().map(|r| r.offset))),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(bad.iter().map(|r| r.timestamp))
                .with_timezone("UTC"),
        ),
        Arc::new(BinaryArray::from_iter(
            bad.iter().map(|r| r.value.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            bad.iter().map(|r| r.error.as_str()),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(parquet_error)?;
    write_parquet(schema, batch, range)
}

/// The bytes a row counts against `file_bytes`: its key, value and headers.
fn row_bytes(r: &Row) -> u64 {
    let headers: usize = r
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 8)
        .sum();
    (r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len) + headers + 32)
        as u64
}

/// Writes `body` at `key` unless something is there already; whether it
/// wrote.
async fn put_new(jobs: &Jobs, key: &str, body: Vec<u8>) -> Result<bool, JobError> {
    let put = jobs
        .store
        .put_opts(
            &ObjectPath::from(key),
            PutPayload::from(body),
            PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            },
        )
        .await;
    match put {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    from: i64,
    to: i64,
}

pub(super) async fn run(
    jobs: &Jobs,
    deadline: tokio::time::Instant,
    budget: u64,
) -> Result<Report, JobError> {
    let mut report = Report::default();
    let s = jobs.settings.tables;
    let mut swept = std::collections::BTreeSet::new();
    for key in jobs.rotation(Job::Tables) {
        if tokio::time::Instant::now() >= deadline || report.bytes_read >= budget {
            report.more = true;
            jobs.set_cursor(Job::Tables, Some(key));
            return Ok(report);
        }
        let (topic, partition) = key;
        let config = match jobs.log.state().topic(&topic) {
            Some(t) if t.config().table_enable.unwrap_or(s.enable_default) => t.config().clone(),
            _ => continue,
        };
        if swept.insert(topic.clone()) {
            sweep_markers(jobs, &topic).await?;
            if let Some(ms) = config.table_retention_ms {
                sweep(jobs, &topic, ms, &mut report).await?;
            }
        }
        // One partition's failure (a damaged object, say) must not hold
        // up the others: it is tried again next pass.
        if let Err(e) = export_partition(jobs, &topic, partition, &config, &mut report).await {
            tracing::warn!(topic, partition, error = %e, "table export of a partition failed");
            report.partitions_failed += 1;
        }
    }
    jobs.set_cursor(Job::Tables, None);
    Ok(report)
}

/// One export step of a partition, if one is due.
async fn export_partition(
    jobs: &Jobs,
    topic: &str,
    partition: i32,
    config: &silt_coordinator::TopicConfig,
    report: &mut Report,
) -> Result<(), JobError> {
    let Some(step) = write_step(jobs, topic, partition, config, report).await? else {
        return Ok(());
    };
    let outcome = jobs
        .log
        .propose(Command::TableExported {
            topic: step.topic,
            partition,
            from: step.from,
            to: step.to,
        })
        .await?;
    if outcome == Outcome::Exported(true) {
        let _ = jobs
            .store
            .delete(&ObjectPath::from(step.marker.as_str()))
            .await;
        tracing::debug!(
            topic,
            partition,
            from = step.from,
            to = step.to,
            "exported to the table"
        );
    }
    Ok(())
}

/// A step whose files are written, to be counted.
pub(super) struct Step {
    topic: silt_coordinator::TopicId,
    from: i64,
    to: i64,
    marker: String,
}

/// Writes the marker and the files of a partition's next step, if one is
/// due; the caller counts it.
pub(super) async fn write_step(
    jobs: &Jobs,
    topic: &str,
    partition: i32,
    config: &silt_coordinator::TopicConfig,
    report: &mut Report,
) -> Result<Option<Step>, JobError> {
    let s = jobs.settings.tables;
    let now = jobs.now();
    // Tables hold committed records only: export stops at the last stable
    // offset, and records of aborted transactions are left out.
    let (from, start, high, chunks, topic_id, aborted) = {
        let state = jobs.log.state();
        let (Some(snap), Some(from)) = (
            state.partition(topic, partition),
            state.exported(topic, partition),
        ) else {
            return Ok(None);
        };
        let start = from.max(snap.log_start_offset);
        let high = snap.last_stable_offset;
        if start >= high {
            return Ok(None);
        }
        let mut chunks = state.chunks_from(topic, partition, start, usize::MAX);
        chunks.retain(|c| c.entry.base_offset < high);
        let aborted = state.aborted_txns(topic, partition, start, high);
        (from, start, high, chunks, snap.topic_id, aborted)
    };
    let waiting: u64 = chunks.iter().map(|c| c.entry.length).sum();
    let oldest = chunks.first().map_or(now, |c| c.entry.append_time);
    let due = waiting >= s.file_bytes || oldest <= now - s.max_age.as_millis() as i64;
    if !due {
        return Ok(None);
    }
    // A step begun before (crashed, or raced) is finished as it began.
    let marker = marker_key(topic, topic_id, partition, from);
    let target = match jobs.store.get(&ObjectPath::from(marker.as_str())).await {
        Ok(got) => {
            let m: Marker =
                serde_json::from_slice(&got.bytes().await?).map_err(|e| JobError::Corrupt {
                    object: marker.clone(),
                    message: e.to_string(),
                })?;
            Some(m.to.min(high))
        }
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let log_append = config.timestamp_type == TimestampType::LogAppendTime;
    let mut rows: Vec<Row> = Vec::new();
    let mut dead: Vec<DeadRow> = Vec::new();
    let mut bytes = 0u64;
    let mut to = start;
    'read: for c in &chunks {
        let e = &c.entry;
        let data = jobs
            .store
            .get_range(
                &ObjectPath::from(e.object.as_str()),
                e.position..e.position + e.length,
            )
            .await?;
        report.bytes_read += e.length;
        let corrupt = |message: String| JobError::Corrupt {
            object: e.object.clone(),
            message,
        };
        let (batches, _, _) = batch::rewrite_chunk(
            &data,
            e.base_offset,
            start,
            usize::MAX,
            true,
            log_append.then_some(e.append_time),
        )
        .map_err(|err| corrupt(err.to_string()))?;
        let mut at = 0;
        while at < batches.len() {
            let h = batch::parse_one(&batches, at).map_err(|err| corrupt(err.to_string()))?;
            let one = &batches[at..at + h.size as usize];
            at += h.size as usize;
            let base = i64::from_be_bytes(one[0..8].try_into().expect("a batch header"));
            let end = base + h.last_offset_delta as i64 + 1;
            if base >= high {
                break 'read;
            }
            let aborted_batch = h.attributes & 0x10 != 0
                && aborted.iter().any(|a| {
                    a.producer_id == h.producer_id
                        && a.first_offset <= base
                        && base <= a.last_offset
                });
            // A batch that cannot be decoded (a codec or a record the
            // produce path does not look into) goes to the dead-letter
            // file whole, at its first offset: never dropped, never stuck.
            let mut batch_rows = Vec::new();
            let decoded = records::decode_batch(one, MAX_CLEANER_BATCH_BYTES).and_then(|d| {
                let d = if aborted_batch { None } else { d };
                for r in d.into_iter().flatten() {
                    let r = r?;
                    if r.offset < start || target.is_some_and(|t| r.offset >= t) {
                        continue;
                    }
                    batch_rows.push(Row {
                        offset: r.offset,
                        timestamp: r.timestamp,
                        log_append_time: h.attributes & 0x08 != 0,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                    });
                }
                Ok(())
            });
            match decoded {
                Ok(()) => {
                    bytes += batch_rows.iter().map(row_bytes).sum::<u64>();
                    rows.extend(batch_rows);
                }
                Err(err) => {
                    bytes += one.len() as u64;
                    dead.push(DeadRow {
                        offset: base.max(start),
                        timestamp: h.max_timestamp,
                        value: Some(Bytes::copy_from_slice(one)),
                        error: format!("record batch {base}..{end} cannot be decoded: {err}"),
                    });
                }
            }
            to = end;
            match target {
                Some(t) if end >= t => {
                    to = t;
                    break 'read;
                }
                None if bytes >= s.file_bytes => break 'read,
                _ => {}
            }
        }
    }
    let to = to.min(high);
    if to <= from {
        return Ok(None);
    }
    if target.is_none() {
        let body = serde_json::to_vec(&Marker { from, to }).expect("serializes");
        if !put_new(jobs, &marker, body).await? {
            // Another exporter began this step: it is finished next pass.
            return Ok(None);
        }
        // An exporter that looked at an old state (paused, or behind the
        // metadata store) may have begun a step another one has counted
        // and whose marker is gone: the progress has moved, and this
        // step's files would repeat rows. Markers are deleted only after
        // their step is counted, so the current state tells.
        let current = jobs.log.catch_up(super::CATCH_UP).await
            && jobs.log.state().exported(topic, partition) == Some(from);
        if !current {
            let _ = jobs.store.delete(&ObjectPath::from(marker.as_str())).await;
            return Ok(None);
        }
    }
    // One file per hour the records fall in; dead letters likewise.
    dead.extend(json_failures(&rows, &config.table_fields));
    type Hour<'a> = (Vec<&'a Row>, Vec<&'a DeadRow>);
    let mut hours: BTreeMap<(String, u32), Hour> = BTreeMap::new();
    for r in &rows {
        hours.entry(date_hour(r.timestamp)).or_default().0.push(r);
    }
    for d in &dead {
        hours.entry(date_hour(d.timestamp)).or_default().1.push(d);
    }
    let name = file_name(topic_id, partition, from);
    for ((date, hour), (part, bad)) in &hours {
        let dir = format!("{topic}/date={date}/hour={hour:02}");
        if !part.is_empty() {
            let file = table_file(partition, part, &config.table_fields, (from, to))?;
            let key = format!("{TABLES_PREFIX}{dir}/{name}.parquet");
            if put_new(jobs, &key, file).await? {
                report.table_files_written += 1;
                report.table_rows_exported += part.len() as u64;
            }
        }
        if !bad.is_empty() {
            let file = dead_letter_file(partition, bad, (from, to))?;
            let key = format!("{DEAD_LETTER_PREFIX}{dir}/{name}.parquet");
            if put_new(jobs, &key, file).await? {
                report.table_dead_letters += bad.len() as u64;
            }
        }
    }
    Ok(Some(Step {
        topic: topic_id,
        from,
        to,
        marker,
    }))
}

/// Deletes markers of steps already counted (an exporter stopped between
/// its progress record and deleting the marker).
async fn sweep_markers(jobs: &Jobs, topic: &str) -> Result<(), JobError> {
    use futures::TryStreamExt;
    let dir = ObjectPath::from(format!("{TABLES_PREFIX}{topic}/_progress/"));
    let mut list = jobs.store.list(Some(&dir));
    let mut stale = Vec::new();
    let mut seen = 0;
    while let Some(meta) = list.try_next().await? {
        seen += 1;
        if seen > TABLE_LIST_MAX {
            break;
        }
        let name = meta.location.filename().unwrap_or_default().to_string();
        let parsed = name.strip_suffix(".json").and_then(|n| {
            let mut parts = n.splitn(3, '-');
            let p = parts.next()?.parse::<i32>().ok()?;
            let from = parts.next()?.parse::<i64>().ok()?;
            let id = parts.next()?.parse::<TopicId>().ok()?;
            Some((p, from, id))
        });
        let Some((partition, from, id)) = parsed else {
            continue;
        };
        // Counted steps of this topic, and any step of a deleted one.
        let (current, exported) = {
            let state = jobs.log.state();
            (
                state.topic(topic).map(|t| t.id()),
                state.exported(topic, partition),
            )
        };
        if current != Some(id) || exported.is_some_and(|e| e > from) {
            stale.push(meta.location);
        }
    }
    drop(list);
    for key in stale {
        jobs.store.delete(&key).await?;
    }
    Ok(())
}

/// Deletes table and dead-letter files of hours older than the table's
/// retention.
async fn sweep(
    jobs: &Jobs,
    topic: &str,
    retention_ms: i64,
    report: &mut Report,
) -> Result<(), JobError> {
    use futures::TryStreamExt;
    let cutoff = jobs.now() - retention_ms;
    for prefix in [TABLES_PREFIX, DEAD_LETTER_PREFIX] {
        let dir = ObjectPath::from(format!("{prefix}{topic}/"));
        let mut list = jobs.store.list(Some(&dir));
        let mut seen = 0;
        while let Some(meta) = list.try_next().await? {
            seen += 1;
            if seen > TABLE_LIST_MAX {
                break;
            }
            let key = meta.location.to_string();
            if hour_end_of(&key).is_some_and(|end| end <= cutoff) {
                jobs.store.delete(&meta.location).await?;
                report.table_files_deleted += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_hours_round_trip() {
        assert_eq!(date_hour(0), ("1970-01-01".to_string(), 0));
        // 2026-11-30T07:15:00Z
        let t = 1_796_022_900_000;
        assert_eq!(date_hour(t), ("2026-11-30".to_string(), 7));
        assert_eq!(date_hour(951_782_400_000), ("2000-02-29".to_string(), 0));
        let key = "tables/t/date=2026-11-30/hour=07/00000-00000000000000000000.parquet";
        assert_eq!(hour_end_of(key), Some(1_796_025_600_000));
        assert_eq!(hour_end_of("tables/t/_progress/00000-1.json"), None);
        for days in [-1000i64, 0, 59, 365 * 30 + 7, 20_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn json_values_decode_or_say_why_not() {
        let fields: Vec<TableField> = silt_coordinator::topic_config::parse_table_schema(
            r#"{"fields":[{"name":"user","type":"string"},{"name":"n","type":"int"},{"name":"ok","type":"boolean"}]}"#,
        )
        .unwrap();
        let d = decode_json(br#"{"user":"a","n":3,"extra":[1]}"#, &fields).unwrap();
        assert_eq!(d[0].as_ref().unwrap(), "a");
        assert!(d[2].is_none());
        assert!(decode_json(b"[1]", &fields).unwrap_err().contains("object"));
        assert!(decode_json(b"{", &fields).unwrap_err().contains("JSON"));
        assert!(decode_json(br#"{"n":"x"}"#, &fields)
            .unwrap_err()
            .contains("\"n\""));
        assert!(decode_json(br#"{"n":3000000000}"#, &fields).is_err());
    }
}
