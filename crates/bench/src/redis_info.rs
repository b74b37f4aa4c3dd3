//! What Redis says about itself: `INFO` fields and sections, commands run
//! (`INFO commandstats`), read events, memory (`used_memory`, `MEMORY
//! STATS`), key counts and pub/sub subscribers, on a connection of the
//! benchmark's own (never the one a measured server uses).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// The connection for setup, INFO, SCAN and FLUSHALL. Its response timeout
/// is long: a `FLUSHALL SYNC` of half a million keys takes longer than the
/// client's default 500 ms on a busy machine.
pub async fn admin_connection(url: &str) -> Result<MultiplexedConnection, String> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    redis::Client::open(url)
        .map_err(|e| e.to_string())?
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("admin connection to Redis: {e}"))
}

/// One `INFO` field (`name:value` line) of an INFO text.
pub fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

/// The text of `INFO <section>` (`INFO` alone for "").
pub async fn section(c: &mut MultiplexedConnection, section: &str) -> Result<String, String> {
    let mut cmd = redis::cmd("INFO");
    if !section.is_empty() {
        cmd.arg(section);
    }
    cmd.query_async(c).await.map_err(|e| format!("INFO {section}: {e}"))
}

/// Every field of `INFO`, by name.
pub async fn all(c: &mut MultiplexedConnection) -> Result<BTreeMap<String, String>, String> {
    let text = section(c, "").await?;
    Ok(text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect())
}

/// `redis_version`, or "?".
pub async fn version(c: &mut MultiplexedConnection) -> String {
    match section(c, "server").await {
        Ok(info) => field(&info, "redis_version").unwrap_or("?").to_string(),
        Err(_) => "?".into(),
    }
}

/// Calls per command from `INFO commandstats`.
pub async fn commandstats(c: &mut MultiplexedConnection) -> Result<BTreeMap<String, u64>, String> {
    let info = section(c, "commandstats").await?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (cmd, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((cmd.to_string(), calls))
        })
        .collect())
}

/// Calls per command between two [`commandstats`], leaving out `skip` (the
/// commands the measurement itself sends).
pub fn command_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    skip: &[&str],
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(cmd, _)| !skip.contains(&cmd.as_str()))
        .filter_map(|(cmd, n)| {
            let d = n.saturating_sub(before.get(cmd).copied().unwrap_or(0));
            (d > 0).then(|| (cmd.clone(), d))
        })
        .collect()
}

/// `total_reads_processed` from INFO stats (this INFO's own read included).
pub async fn reads_processed(c: &mut MultiplexedConnection) -> Result<i64, String> {
    let info = section(c, "stats").await?;
    field(&info, "total_reads_processed").and_then(|v| v.parse().ok()).ok_or_else(|| "no total_reads_processed".into())
}

/// `used_memory`, read after Redis has had a moment to finish incremental
/// rehashing and to shrink client buffers.
pub async fn used_memory(c: &mut MultiplexedConnection) -> Result<i64, String> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info = section(c, "memory").await?;
    field(&info, "used_memory").and_then(|v| v.parse().ok()).ok_or_else(|| "INFO memory has no used_memory".to_string())
}

/// The parts of `MEMORY STATS` that explain the per-key overhead.
pub async fn memory_stats(c: &mut MultiplexedConnection) -> Result<String, String> {
    let v: redis::Value =
        redis::cmd("MEMORY").arg("STATS").query_async(c).await.map_err(|e| format!("MEMORY STATS: {e}"))?;
    let mut flat = BTreeMap::new();
    flatten("", &v, &mut flat);
    let get = |k: &str| flat.get(k).cloned().unwrap_or_else(|| "?".into());
    Ok(format!(
        "MEMORY STATS: keys.count {}, keys.bytes-per-key {}, dataset.bytes {}, \
         overhead.hashtable.main {}, overhead.hashtable.expires {}",
        get("keys.count"),
        get("keys.bytes-per-key"),
        get("dataset.bytes"),
        get("db.0.overhead.hashtable.main"),
        get("db.0.overhead.hashtable.expires"),
    ))
}

/// `MEMORY STATS`' nested answer as dotted names (`db.0.overhead...`).
fn flatten(prefix: &str, v: &redis::Value, out: &mut BTreeMap<String, String>) {
    let text = |v: &redis::Value| -> Option<String> {
        match v {
            redis::Value::Int(i) => Some(i.to_string()),
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            redis::Value::SimpleString(s) => Some(s.clone()),
            redis::Value::Double(d) => Some(format!("{d:.3}")),
            _ => None,
        }
    };
    let pairs: Vec<(&redis::Value, &redis::Value)> = match v {
        redis::Value::Array(items) => items.chunks(2).filter_map(|c| Some((c.first()?, c.get(1)?))).collect(),
        redis::Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        _ => return,
    };
    for (k, v) in pairs {
        let Some(k) = text(k) else { continue };
        let name = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
        match text(v) {
            Some(t) => {
                out.insert(name, t);
            }
            None => flatten(&name, v, out),
        }
    }
}

pub async fn dbsize(c: &mut MultiplexedConnection) -> Result<u64, String> {
    redis::cmd("DBSIZE").query_async(c).await.map_err(|e| format!("DBSIZE: {e}"))
}

/// `FLUSHALL SYNC`.
pub async fn flush(c: &mut MultiplexedConnection) -> Result<(), String> {
    redis::cmd("FLUSHALL").arg("SYNC").query_async::<()>(c).await.map_err(|e| format!("FLUSHALL: {e}"))
}

/// Keys matching `pattern`, counted by SCAN (deduplicated: SCAN may return
/// a key twice while the table rehashes).
pub async fn count_keys(c: &mut MultiplexedConnection, pattern: &str) -> Result<u64, String> {
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(c)
            .await
            .map_err(|e| format!("SCAN: {e}"))?;
        seen.extend(keys);
        if next == 0 {
            return Ok(seen.len() as u64);
        }
        cursor = next;
    }
}

/// Subscribers of `channel` (`PUBSUB NUMSUB`).
pub async fn numsub(c: &mut MultiplexedConnection, channel: &str) -> Result<i64, String> {
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(c)
        .await
        .map_err(|e| format!("PUBSUB NUMSUB: {e}"))?;
    Ok(n)
}
