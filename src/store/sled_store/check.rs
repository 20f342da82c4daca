//! `photoclaim check`: verifies a data directory offline, without changing
//! it: the format version, every claim's hash chain and history (replayed
//! with the status rules), the service-wide chain over the event log, and
//! every index against the records it indexes.

use std::path::Path;

use prost::Message;

use super::{open_db, read_format_version};
use super::{OpenError, DIR_FORMAT_VERSION};
use crate::domain::access::ApiKey;
use crate::domain::chain::{self, Hash};
use crate::domain::external_review::ExternalReview;
use crate::domain::{Claim, ClaimEvent, OfficialResponse};
use crate::store::schema::{
    self, be, claim_record, log_head, pair, pdq_entry, sha_index_key, sha_key, state_key, u64_at,
    IdempotencyRecord, LOG_ENTRY_LEN, META_LAST_CLAIM_ID, META_LAST_LOG_POSITION, OP_ATTACH,
    OP_REGISTER,
};

/// Problems listed in a report at most (all are counted).
const MAX_LISTED: usize = 1000;

/// What `check` found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Format version on disk.
    pub format_version: u32,
    /// Claims checked.
    pub claims: u64,
    /// Events checked.
    pub events: u64,
    /// Responses checked.
    pub responses: u64,
    /// Last position of the event log.
    pub log_position: u64,
    /// Service-wide chain head after the last event.
    pub chain_head: Hash,
    /// The logical size of the data: every key and value of every tree, in
    /// bytes (records, indexes, event log, request ids, keys).
    pub logical_bytes: u64,
    /// What sled occupies on disk, in bytes.
    pub disk_bytes: u64,
    /// The first [`MAX_LISTED`] problems, each naming what is wrong where.
    pub problems: Vec<String>,
    /// All problems found.
    pub problem_count: u64,
}

impl CheckReport {
    /// No problem found.
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(text);
        }
    }
}

type Sled<T> = Result<T, OpenError>;

/// A phase of the check; `Err` is a read that failed, as a problem naming
/// what was being read (a claim, a record, or a tree and the last key read
/// before the failure), so that damage on disk points at what it hit.
type Walk<T = ()> = Result<T, String>;

/// Names a failed sled read.
trait Reading<T> {
    /// `at()` is what was being read.
    fn reading(self, at: impl FnOnce() -> String) -> Walk<T>;
}

impl<T> Reading<T> for sled::Result<T> {
    fn reading(self, at: impl FnOnce() -> String) -> Walk<T> {
        self.map_err(|e| format!("{}: storage error while reading: {e}", at()))
    }
}

/// `tree`, at the entry after `last` (a name of the last entry read).
fn next_in(tree: &str, last: &Option<String>) -> String {
    match last {
        Some(last) => format!("{tree} (the entry after {last})"),
        None => format!("{tree} (its first entry)"),
    }
}

/// The trees `check` reads.
struct Trees {
    meta: sled::Tree,
    claims: sled::Tree,
    by_state: sled::Tree,
    responses: sled::Tree,
    events: sled::Tree,
    event_log: sled::Tree,
    by_sha256: sled::Tree,
    by_pdq: sled::Tree,
    request_ids: sled::Tree,
    keys: sled::Tree,
    key_names: sled::Tree,
    reviews: sled::Tree,
    reviews_by_url: sled::Tree,
    review_log: sled::Tree,
}

/// Checks the data directory `dir`. `Err` if it cannot be opened (missing,
/// locked by a running server, written by a newer photoclaim); problems in
/// the data are in the report.
pub fn check_dir(dir: &Path) -> Sled<CheckReport> {
    check_dir_reporting(dir, &|_: &CheckProgress| {})
}

/// How far [`check_dir_reporting`] is.
#[derive(Clone, Copy, Debug)]
pub struct CheckProgress {
    /// What is being checked: "claims", "event log", "indexes", ...
    pub phase: &'static str,
    /// Claims checked so far.
    pub claims_done: u64,
    /// Claims in the directory (the last claim id).
    pub claims_total: u64,
}

/// [`check_dir`], telling `progress` how far it is (every 1,000 claims and
/// at each phase).
pub fn check_dir_reporting(dir: &Path, progress: &dyn Fn(&CheckProgress)) -> Sled<CheckReport> {
    if !dir.join("conf").is_file() {
        return Err(OpenError::Other {
            dir: dir.to_path_buf(),
            cause: "not a photoclaim data directory (no sled database in it)".into(),
        });
    }
    let db = open_db(dir, 64 * 1024 * 1024)?;
    let tree = |name: &str| {
        db.open_tree(name).map_err(|e| OpenError::Other {
            dir: dir.to_path_buf(),
            cause: e.to_string(),
        })
    };
    let trees = Trees {
        meta: tree(schema::META)?,
        claims: tree(schema::CLAIMS)?,
        by_state: tree(schema::CLAIMS_BY_STATE)?,
        responses: tree(schema::RESPONSES)?,
        events: tree(schema::EVENTS)?,
        event_log: tree(schema::EVENT_LOG)?,
        by_sha256: tree(schema::CLAIMS_BY_SHA256)?,
        by_pdq: tree(schema::CLAIMS_BY_PDQ)?,
        request_ids: tree(schema::REQUEST_IDS)?,
        keys: tree(schema::API_KEYS)?,
        key_names: tree(schema::API_KEY_NAMES)?,
        reviews: tree(schema::EXTERNAL_REVIEWS)?,
        reviews_by_url: tree(schema::EXTERNAL_REVIEWS_BY_URL)?,
        review_log: tree(schema::REVIEW_LOG)?,
    };
    let mut report = CheckReport::default();
    match read_format_version(dir, &trees.meta)? {
        Some(found) if found > DIR_FORMAT_VERSION => {
            return Err(OpenError::TooNew {
                dir: dir.to_path_buf(),
                found,
                supported: DIR_FORMAT_VERSION,
            })
        }
        Some(found) if found < DIR_FORMAT_VERSION => {
            report.format_version = found;
            report.problem(format!(
                "format version {found} is older than this binary's {DIR_FORMAT_VERSION}: start `photoclaim serve` on it once to migrate it, then check again"
            ));
            return Ok(report);
        }
        Some(found) => report.format_version = found,
        None => {
            report.problem("meta: no format_version entry".into());
            return Ok(report);
        }
    }
    let walk = |report: &mut CheckReport, result: Walk| {
        if let Err(problem) = result {
            report.problem(problem);
        }
    };
    let claims_total = meta_u64(&trees.meta, META_LAST_CLAIM_ID).unwrap_or(0);
    let at = |phase: &'static str, claims_done: u64| {
        progress(&CheckProgress {
            phase,
            claims_done,
            claims_total,
        })
    };
    at("claims", 0);
    let result = check_claims(&trees, &mut report, &|done| at("claims", done));
    walk(&mut report, result);
    at("event log", report.claims);
    let result = check_log(&trees, &mut report);
    walk(&mut report, result);
    at("indexes", report.claims);
    let result = check_indexes(&trees, &mut report);
    walk(&mut report, result);
    at("orphans", report.claims);
    let result = check_orphans(&trees, &mut report);
    walk(&mut report, result);
    at("API keys", report.claims);
    let result = check_keys(&trees, &mut report);
    walk(&mut report, result);
    at("external reviews", report.claims);
    let result = check_reviews(&trees, &mut report);
    walk(&mut report, result);
    at("sizes", report.claims);
    let result = measure(&db, &mut report);
    walk(&mut report, result);
    Ok(report)
}

/// Logical and on-disk sizes (for the disk budget in BENCHMARKS.md).
fn measure(db: &sled::Db, report: &mut CheckReport) -> Walk {
    for name in db.tree_names() {
        let tree = String::from_utf8_lossy(&name).into_owned();
        let mut last = None;
        for entry in db.open_tree(&name).reading(|| tree.clone())?.iter() {
            let (key, value) = entry.reading(|| next_in(&tree, &last))?;
            report.logical_bytes += (key.len() + value.len()) as u64;
            last = Some(format!("key {key:?}"));
        }
    }
    report.disk_bytes = db
        .size_on_disk()
        .reading(|| "the data directory's size".into())?;
    Ok(())
}

/// Decodes `bytes`, also refusing an encoding that is not the one photoclaim
/// writes (extra or reordered fields change the hash a chain covers).
fn decode_exact<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M, String> {
    let record = M::decode(bytes).map_err(|e| format!("{what} record does not decode: {e}"))?;
    if record.encode_to_vec() != bytes {
        return Err(format!("{what} record is not in canonical encoding"));
    }
    Ok(record)
}

fn meta_u64(meta: &sled::Tree, key: &[u8]) -> Walk<u64> {
    let value = meta
        .get(key)
        .reading(|| format!("meta/{}", String::from_utf8_lossy(key)))?;
    Ok(value.map(|v| u64_at(&v, 0)).unwrap_or(0))
}

/// Every claim: record, events, responses, and its own index entries.
fn check_claims(t: &Trees, report: &mut CheckReport, done: &dyn Fn(u64)) -> Walk {
    let last_id = meta_u64(&t.meta, META_LAST_CLAIM_ID)?;
    let mut last = None;
    for entry in t.claims.iter() {
        let (key, value) = entry.reading(|| next_in("claims", &last))?;
        last = Some(match key.len() {
            8 => format!("claims/{}", u64_at(&key, 0)),
            _ => format!("key {key:?}"),
        });
        report.claims += 1;
        if report.claims.is_multiple_of(1000) {
            done(report.claims);
        }
        if key.len() != 8 {
            report.problem(format!("claims: malformed key {key:?}"));
            continue;
        }
        let id = u64_at(&key, 0);
        let at = format!("claims/{id}");
        let claim = match Claim::decode(value.as_ref()) {
            Ok(claim) => claim,
            Err(e) => {
                report.problem(format!("{at}: claim record does not decode: {e}"));
                continue;
            }
        };
        // A read of this claim's records that fails is a problem of this
        // claim; the check goes on with the next one.
        if let Err(problem) = check_claim(t, report, id, &claim, &value, last_id) {
            report.problem(problem);
        }
    }
    Ok(())
}

/// One claim whose record decoded: its events, responses and index entries.
fn check_claim(
    t: &Trees,
    report: &mut CheckReport,
    id: u64,
    claim: &Claim,
    value: &[u8],
    last_id: u64,
) -> Walk {
    let at = format!("claims/{id}");
    {
        if claim.id != id {
            report.problem(format!("{at}: record has id {}", claim.id));
        }
        if id > last_id {
            report.problem(format!(
                "{at}: id above meta last_claim_id {last_id} (the id could be given again)"
            ));
        }
        let mut events = Vec::new();
        let mut last = None;
        for entry in t.events.range(pair(id, 0)..=pair(id, u64::MAX)) {
            let (key, value) = entry.reading(|| next_in(&format!("{at}/events"), &last))?;
            last = Some(format!("{at}/events/{}", u64_at(&key, 8)));
            report.events += 1;
            match decode_exact::<ClaimEvent>(&value, "event") {
                Ok(event) if event.sequence == u64_at(&key, 8) => events.push(event),
                Ok(event) => report.problem(format!(
                    "{at}/events/{}: record has sequence {}",
                    u64_at(&key, 8),
                    event.sequence
                )),
                Err(e) => report.problem(format!("{at}/events/{}: {e}", u64_at(&key, 8))),
            }
        }
        let mut responses = Vec::new();
        let mut last = None;
        for entry in t.responses.range(pair(id, 0)..=pair(id, u64::MAX)) {
            let (key, value) =
                entry.reading(|| next_in(&format!("{at}/officialResponses"), &last))?;
            last = Some(format!("{at}/officialResponses/{}", u64_at(&key, 8)));
            report.responses += 1;
            let rid = u64_at(&key, 8);
            match decode_exact::<OfficialResponse>(&value, "official response") {
                Ok(r) if r.id == rid && r.claim_id == id => responses.push(r),
                Ok(r) => report.problem(format!(
                    "{at}/officialResponses/{rid}: record says claims/{}/officialResponses/{}",
                    r.claim_id, r.id
                )),
                Err(e) => report.problem(format!("{at}/officialResponses/{rid}: {e}")),
            }
        }
        match crate::domain::history::replay(claim, &events, &responses) {
            Err(b) => report.problem(format!("{at}: {b}")),
            Ok(rebuilt) if rebuilt != *claim => report.problem(format!(
                "{at}: the record does not match its events (state, counts, verdict or chain head {} vs {} from the events): it was changed",
                hex::encode(&claim.chain_head),
                hex::encode(&rebuilt.chain_head)
            )),
            Ok(_) => {
                let latest = responses.iter().find(|r| Some(r.id) == claim.evidence.as_ref().map(|e| e.total));
                let latest = latest.map(Message::encode_to_vec).unwrap_or_default();
                if claim_record(claim, &latest) != value {
                    report.problem(format!(
                        "{at}: record is not in canonical encoding, or its copy of the latest official response differs from that response"
                    ));
                }
            }
        }
        let attached = claim.evidence.as_ref().map(|e| e.total).unwrap_or(0);
        if responses.len() as u64 > attached {
            report.problem(format!(
                "{at}: {} response records but {attached} attached",
                responses.len()
            ));
        }
        for event in &events {
            check_log_entry(t, report, &at, event)?;
        }
        let in_state = t.by_state.contains_key(state_key(claim.state, id));
        if !in_state.reading(|| format!("claims_by_state (the entry for {at})"))? {
            report.problem(format!(
                "{at}: missing from the state index (claims_by_state)"
            ));
        }
        if let Some(sha) = claim.image.as_ref().and_then(|i| sha_key(&i.sha256)) {
            let indexed = t.by_sha256.contains_key(sha_index_key(&sha, id));
            if !indexed.reading(|| format!("claims_by_sha256 (the entry for {at})"))? {
                report.problem(format!(
                    "{at}: missing from the SHA-256 index (claims_by_sha256)"
                ));
            }
        }
        let expected = pdq_entry(claim).map(|(_, _, value)| value);
        let stored = t
            .by_pdq
            .get(be(id))
            .reading(|| format!("claims_by_pdq/{id}"))?;
        if stored.as_deref() != expected.as_ref().map(|v| &v[..]) {
            report.problem(format!(
                "{at}: PDQ index entry (claims_by_pdq) does not match the record"
            ));
        }
    }
    Ok(())
}

/// An event's entry in `event_log` names it back.
fn check_log_entry(t: &Trees, report: &mut CheckReport, at: &str, event: &ClaimEvent) -> Walk {
    let position = event.log_position;
    let entry = t.event_log.get(be(position));
    match entry.reading(|| {
        format!(
            "event_log/{position} (the entry of {at}/events/{})",
            event.sequence
        )
    })? {
        Some(entry)
            if entry.len() == LOG_ENTRY_LEN
                && entry[..16] == pair(event.claim_id, event.sequence) => {}
        _ => report.problem(format!(
            "{at}/events/{}: log position {position} does not name it in event_log",
            event.sequence
        )),
    }
    Ok(())
}

/// The event log: dense positions, each naming an event, and the
/// service-wide chain recomputed from the event records.
fn check_log(t: &Trees, report: &mut CheckReport) -> Walk {
    let mut head = chain::GENESIS;
    let mut expected_position = 1;
    let mut chain_ok = true;
    let mut last = None;
    for entry in t.event_log.iter() {
        let (key, value) = entry.reading(|| next_in("event_log", &last))?;
        let position = u64_at(&key, 0);
        last = Some(format!("event_log/{position}"));
        let at = format!("event_log/{position}");
        if position != expected_position {
            report.problem(format!(
                "{at}: positions jump from {} (a hole in the log)",
                expected_position - 1
            ));
        }
        expected_position = position + 1;
        let Ok(stored_head) = log_head(&value) else {
            report.problem(format!("{at}: malformed entry ({} bytes)", value.len()));
            chain_ok = false;
            continue;
        };
        let named = format!("claims/{}/events/{}", u64_at(&value, 0), u64_at(&value, 8));
        let event = t.events.get(&value[..16]);
        let Some(bytes) = event.reading(|| format!("{at}: {named}"))? else {
            report.problem(format!(
                "{at}: names claims/{}/events/{}, which is missing",
                u64_at(&value, 0),
                u64_at(&value, 8)
            ));
            chain_ok = false;
            continue;
        };
        match ClaimEvent::decode(bytes.as_ref()) {
            Ok(event)
                if event.log_position == position && event.event_type == i32::from(value[16]) => {}
            _ => report.problem(format!(
                "{at}: the event it names does not have this position and type"
            )),
        }
        head = chain::link(&head, &chain::sha256(&bytes));
        if chain_ok && head != stored_head {
            report.problem(format!(
                "{at}: service-wide chain broken: stored head {} but the events give {}",
                hex::encode(stored_head),
                hex::encode(head)
            ));
            // Later heads all differ too: report the first only.
            chain_ok = false;
        }
        report.log_position = position;
    }
    report.chain_head = head;
    let recorded = meta_u64(&t.meta, META_LAST_LOG_POSITION)?;
    if recorded != report.log_position {
        report.problem(format!(
            "meta: last_log_position is {recorded} but the log ends at {}",
            report.log_position
        ));
    }
    Ok(())
}

/// Index entries that point at records which do not exist or do not match.
fn check_indexes(t: &Trees, report: &mut CheckReport) -> Walk {
    let claim = |id: u64| -> Walk<Option<Claim>> {
        Ok(t.claims
            .get(be(id))
            .reading(|| format!("claims/{id}"))?
            .and_then(|bytes| Claim::decode(bytes.as_ref()).ok()))
    };
    let mut last = None;
    for entry in t.by_state.iter() {
        let (key, _) = entry.reading(|| next_in("claims_by_state", &last))?;
        last = Some(format!("key {key:?}"));
        if key.len() != 9 {
            report.problem(format!("claims_by_state: malformed key {key:?}"));
            continue;
        }
        let id = u64_at(&key, 1);
        if claim(id)?.is_none_or(|c| c.state != i32::from(key[0])) {
            report.problem(format!(
                "claims_by_state: entry (state {}, claims/{id}) does not match a claim",
                key[0]
            ));
        }
    }
    let mut last = None;
    for entry in t.by_sha256.iter() {
        let (key, _) = entry.reading(|| next_in("claims_by_sha256", &last))?;
        last = Some(match key.len() {
            40 => format!("the entry for claims/{}", u64_at(&key, 32)),
            _ => format!("key {key:?}"),
        });
        if key.len() != 40 {
            report.problem(format!(
                "claims_by_sha256: malformed key of {} bytes",
                key.len()
            ));
            continue;
        }
        let id = u64_at(&key, 32);
        let matches = claim(id)?.is_some_and(|c| {
            c.image
                .as_ref()
                .and_then(|i| sha_key(&i.sha256))
                .is_some_and(|sha| sha[..] == key[..32])
        });
        if !matches {
            report.problem(format!(
                "claims_by_sha256: entry for claims/{id} does not match its image"
            ));
        }
    }
    let mut last = None;
    for entry in t.by_pdq.iter() {
        let (key, _) = entry.reading(|| next_in("claims_by_pdq", &last))?;
        last = Some(format!("key {key:?}"));
        if key.len() != 8 || claim(u64_at(&key, 0))?.is_none() {
            report.problem(format!("claims_by_pdq: entry {key:?} names no claim"));
        }
    }
    let mut last = None;
    for entry in t.request_ids.iter() {
        let (key, value) = entry.reading(|| next_in("request_ids", &last))?;
        let name = String::from_utf8_lossy(key.get(1..).unwrap_or_default()).into_owned();
        let at = format!("request_ids/{name:?}");
        last = Some(at.clone());
        let record = match IdempotencyRecord::decode(value.as_ref()) {
            Ok(record) => record,
            Err(e) => {
                report.problem(format!("{at}: record does not decode: {e}"));
                continue;
            }
        };
        let exists = match key.first() {
            Some(&OP_REGISTER) => t
                .claims
                .contains_key(be(record.claim_id))
                .reading(|| format!("claims/{}", record.claim_id))?,
            Some(&OP_ATTACH) => t
                .responses
                .contains_key(pair(record.claim_id, record.response_id))
                .reading(|| {
                    format!(
                        "claims/{}/officialResponses/{}",
                        record.claim_id, record.response_id
                    )
                })?,
            _ => false,
        };
        if !exists {
            report.problem(format!(
                "{at}: names claims/{} (response {}), which does not exist",
                record.claim_id, record.response_id
            ));
        }
    }
    Ok(())
}

/// Events and responses of claims that do not exist.
fn check_orphans(t: &Trees, report: &mut CheckReport) -> Walk {
    for (tree, what) in [(&t.events, "events"), (&t.responses, "officialResponses")] {
        let mut last_checked = None;
        let mut last = None;
        for key in tree.iter().keys() {
            let key = key.reading(|| next_in(what, &last))?;
            last = Some(match key.len() {
                16 => format!("claims/{}/{what}/{}", u64_at(&key, 0), u64_at(&key, 8)),
                _ => format!("key {key:?}"),
            });
            if key.len() != 16 {
                report.problem(format!("{what}: malformed key of {} bytes", key.len()));
                continue;
            }
            let id = u64_at(&key, 0);
            if last_checked == Some(id) {
                continue;
            }
            last_checked = Some(id);
            if !t
                .claims
                .contains_key(be(id))
                .reading(|| format!("claims/{id}"))?
            {
                report.problem(format!(
                    "claims/{id}/{what}: records of a claim that does not exist"
                ));
            }
        }
    }
    Ok(())
}

/// Imported fact-checks, their URL index and the review log.
fn check_reviews(t: &Trees, report: &mut CheckReport) -> Walk {
    let mut last = None;
    for entry in t.reviews.iter() {
        let (key, value) = entry.reading(|| next_in("external_reviews", &last))?;
        let id = u64_at(&key, 0);
        last = Some(format!("external_reviews/{id}"));
        match ExternalReview::decode(value.as_ref()) {
            Ok(review) if review.id != id => report.problem(format!(
                "externalReviews/{id}: the record says it is externalReviews/{}",
                review.id
            )),
            Ok(review) => {
                let named = t.reviews_by_url.get(review.review_url.as_bytes());
                let named =
                    named.reading(|| format!("external_reviews_by_url/{:?}", review.review_url))?;
                if named.as_deref() != Some(&key[..]) {
                    report.problem(format!("externalReviews/{id}: missing from the URL index"));
                }
            }
            Err(e) => report.problem(format!("externalReviews/{id}: record does not decode: {e}")),
        }
    }
    let mut last = None;
    for entry in t.reviews_by_url.iter() {
        let (url, id) = entry.reading(|| next_in("external_reviews_by_url", &last))?;
        let shown = String::from_utf8_lossy(&url).into_owned();
        last = Some(format!("external_reviews_by_url/{shown:?}"));
        if !t
            .reviews
            .contains_key(&id)
            .reading(|| format!("external_reviews/{id:?}"))?
        {
            report.problem(format!(
                "external_reviews_by_url/{shown:?}: names no review"
            ));
        }
    }
    let mut last = None;
    for entry in t.review_log.iter() {
        let (key, value) = entry.reading(|| next_in("review_log", &last))?;
        let position = u64_at(&key, 0);
        last = Some(format!("review_log/{position}"));
        match crate::store::ReviewChange::decode(value.as_ref()) {
            Ok(change) => {
                if !t
                    .reviews
                    .contains_key(be(change.review_id))
                    .reading(|| format!("external_reviews/{}", change.review_id))?
                {
                    report.problem(format!(
                        "review_log/{position}: names missing externalReviews/{}",
                        change.review_id
                    ));
                }
            }
            Err(e) => report.problem(format!("review_log/{position}: does not decode: {e}")),
        }
    }
    Ok(())
}

/// API keys and their name index.
fn check_keys(t: &Trees, report: &mut CheckReport) -> Walk {
    let mut last = None;
    for entry in t.keys.iter() {
        let (key, value) = entry.reading(|| next_in("api_keys", &last))?;
        last = Some(format!("api_keys/{key:?}"));
        match ApiKey::decode(value.as_ref()) {
            Ok(api_key) => {
                let name = api_key.name.to_ascii_lowercase();
                let named = t.key_names.get(name.as_bytes());
                let named = named.reading(|| format!("api_key_names/{:?}", api_key.name))?;
                if named.as_deref() != Some(&key[..]) {
                    report.problem(format!(
                        "api_keys/{:?}: missing from the name index",
                        api_key.name
                    ));
                }
            }
            Err(e) => report.problem(format!("api_keys/{key:?}: record does not decode: {e}")),
        }
    }
    let mut last = None;
    for entry in t.key_names.iter() {
        let (name, id) = entry.reading(|| next_in("api_key_names", &last))?;
        let shown = String::from_utf8_lossy(&name).into_owned();
        last = Some(format!("api_key_names/{shown:?}"));
        if !t
            .keys
            .contains_key(&id)
            .reading(|| format!("api_keys/{id:?}"))?
        {
            report.problem(format!(
                "api_key_names/{:?}: names no key",
                String::from_utf8_lossy(&name)
            ));
        }
    }
    Ok(())
}
