//! [`Store`] for the core: writes run through the engine's atomic commit
//! with the rules, idempotency records and chain sealing written here
//! once; reads go to the tables or the derived state.

use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prost::Message;

use super::derived::Change;
use super::{Core, LOG_SCAN_LIMIT};
use crate::domain::access::ApiKey;
use crate::domain::external_review::ExternalReview;
use crate::domain::history::ClaimHistory;
use crate::domain::{
    chain, rules, Claim, ClaimEvent, ClaimView, Error, EventDetails, OfficialResponse, Page,
    Result, StatusView, Timestamp, VerificationState, FORMAT_VERSION,
};
use crate::store::engine::{all, span, span_inclusive, After, Committed, Engine, TxError, WriteTx};
use crate::store::schema::{
    be, claim_record, decode, fingerprint, log_entry, log_head, pair, pdq_entry, request_key,
    sha_index_key, sha_key, state_key, u64_at, IdempotencyRecord, LatestCopy, Table, LOG_ENTRY_LEN,
    META_LAST_CLAIM_ID, META_LAST_LOG_POSITION, OP_ATTACH, OP_REGISTER,
};
use crate::store::{
    Attached, EventFilter, ImportedReview, LogBatch, NewClaim, NewResponse, NewVerdict,
    PageTokenKey, Registered, RequestRecord, ReviewChange, SharedClaim, Similar, SimilarQuery,
    Store, StoreStats, Writability,
};

type TxResult<T> = std::result::Result<T, TxError>;

/// Decodes a record read inside a write.
pub(super) fn tx_decode<M: Message + Default>(bytes: &[u8], what: &str) -> TxResult<M> {
    decode(bytes, what).map_err(TxError::Abort)
}

/// A counter in `meta`, advanced by one inside the write (so values are
/// dense and in commit order).
pub(super) fn next(tx: &dyn WriteTx, counter: &[u8]) -> TxResult<u64> {
    let last = tx.get(Table::Meta, counter)?;
    let value = last.map_or(0, |v| u64_at(&v, 0)) + 1;
    tx.insert(Table::Meta, counter, &be(value))?;
    Ok(value)
}

/// Looks up a request_id: `Ok(None)` if unused, the record if the payload
/// matches, `RequestIdReused` if it was used for something else.
fn check_request_id(
    tx: &dyn WriteTx,
    key: Option<&[u8]>,
    fingerprint: &[u8],
) -> TxResult<Option<IdempotencyRecord>> {
    let Some(key) = key else {
        return Ok(None);
    };
    let Some(bytes) = tx.get(Table::RequestIds, key)? else {
        return Ok(None);
    };
    let record: IdempotencyRecord = tx_decode(&bytes, "request_ids record")?;
    if record.fingerprint != fingerprint {
        return Err(TxError::Abort(Error::RequestIdReused {
            request_id: String::from_utf8_lossy(&key[1..]).into_owned(),
        }));
    }
    Ok(Some(record))
}

/// Records a request_id (if the write has one) with what its write made,
/// so that a retry replays it.
fn remember_request(
    tx: &dyn WriteTx,
    key: Option<&[u8]>,
    fingerprint: &[u8],
    claim_id: u64,
    response_id: u64,
) -> TxResult<()> {
    if let Some(key) = key {
        let record = IdempotencyRecord {
            format_version: FORMAT_VERSION,
            fingerprint: fingerprint.to_vec(),
            claim_id,
            response_id,
        };
        tx.insert(Table::RequestIds, key, &record.encode_to_vec())?;
    }
    Ok(())
}

/// Moves a claim's entry in the state index when its state changed.
fn reindex_state(tx: &dyn WriteTx, claim: &Claim, old_state: i32) -> TxResult<()> {
    if claim.state != old_state {
        tx.remove(Table::ClaimsByState, &state_key(old_state, claim.id))?;
        tx.insert(Table::ClaimsByState, &state_key(claim.state, claim.id), &[])?;
    }
    Ok(())
}

/// Stores `event` at the next position of the event log (read and advanced
/// inside the write, so positions are dense and in commit order), seals it
/// into the claim's hash chain and the service-wide chain, writes the
/// claim record (whose chain head moved) with its copy of the latest
/// response (encoded; empty for none), and returns the position.
fn append_event(
    tx: &dyn WriteTx,
    claim: &mut Claim,
    latest_response: &[u8],
    mut event: ClaimEvent,
) -> TxResult<u64> {
    let position = next(tx, META_LAST_LOG_POSITION)?;
    event.log_position = position;
    let (bytes, hash) = chain::seal(claim, &mut event);
    let previous = match position {
        1 => chain::GENESIS,
        _ => match tx.get(Table::EventLog, &be(position - 1))? {
            Some(entry) => log_head(&entry)?,
            None => {
                return Err(TxError::Abort(Error::Internal(format!(
                    "event_log has no entry {}",
                    position - 1
                ))))
            }
        },
    };
    tx.insert(Table::Events, &pair(event.claim_id, event.sequence), &bytes)?;
    let entry = log_entry(&event, &chain::link(&previous, &hash));
    tx.insert(Table::EventLog, &be(position), &entry)?;
    tx.insert(
        Table::Claims,
        &be(claim.id),
        &claim_record(claim, latest_response),
    )?;
    Ok(position)
}

/// A claim record read inside a write, and its copy of the latest
/// response as stored.
fn load_claim(tx: &dyn WriteTx, id: u64) -> TxResult<(Claim, Vec<u8>)> {
    match tx.get(Table::Claims, &be(id))? {
        Some(bytes) => {
            let at = format!("claims/{id}");
            let copy: LatestCopy = tx_decode(&bytes, &at)?;
            Ok((tx_decode(&bytes, &at)?, copy.response))
        }
        None => Err(TxError::Abort(Error::NotFound(format!("claims/{id}")))),
    }
}

impl<E: Engine> Store for Core<E> {
    async fn register_claim(&self, cmd: NewClaim) -> Result<Registered> {
        // Every registration updates or searches the index after its commit:
        // without one, refuse before writing anything.
        self.pdq_index_ready().await?;
        let draft_bytes = cmd.claim.encode_to_vec();
        let fp = fingerprint(&[&draft_bytes]);
        let request_key = (!cmd.request_id.is_empty())
            .then(|| request_key(OP_REGISTER, cmd.request_id.as_bytes()));
        let sha = cmd.claim.image.as_ref().and_then(|i| sha_key(&i.sha256));
        let pdq = pdq_entry(&cmd.claim);
        let near_distance = cmd.near_distance;
        let (dihedral, variants) = (cmd.dihedral, cmd.variants);
        type Out = (u64, u64, Option<Claim>);
        let after = self.derived.after(
            move |derived, (id, _, claim): &Out| {
                if let Some(claim) = claim {
                    derived.follow(Change {
                        claim,
                        latest_response: None,
                        new_hash: pdq.map(|(hash, quality, _)| (*id, hash, quality)),
                    });
                }
            },
            |(_, position, _): &Out| *position,
        );
        let Committed {
            value: (id, _, committed),
            durable,
        } = self
            .engine
            .commit(
                move |tx: &dyn WriteTx| {
                    let key = request_key.as_deref();
                    if let Some(record) = check_request_id(tx, key, &fp)? {
                        return Ok((record.claim_id, 0, None));
                    }
                    let id = next(tx, META_LAST_CLAIM_ID)?;
                    let mut claim = cmd.claim.clone();
                    let event = rules::register(&mut claim, id, &cmd.actor, Timestamp::now());
                    tx.insert(Table::ClaimsByState, &state_key(claim.state, id), &[])?;
                    let position = append_event(tx, &mut claim, &[], event)?;
                    if let Some(sha) = &sha {
                        tx.insert(Table::ClaimsBySha256, &sha_index_key(sha, id), &[])?;
                    }
                    if let Some((_, _, value)) = &pdq {
                        tx.insert(Table::ClaimsByPdq, &be(id), value)?;
                    }
                    remember_request(tx, key, &fp, id, 0)?;
                    Ok((id, position, Some(claim)))
                },
                after,
            )
            .await?;
        let replayed = committed.is_none();
        let claim = match committed {
            // Just written: no response yet.
            Some(claim) => ClaimView {
                claim,
                latest_response: None,
            },
            None => self
                .read_claim(id)?
                .ok_or_else(|| Error::Internal(format!("claim {id} vanished after commit")))?,
        };
        let same_image = self
            .same_image(&claim.claim, near_distance, dihedral, variants)
            .await;
        // A replay's batch was made durable too, and that covers the first
        // call's commit.
        durable?;
        let same_image = same_image?;
        Ok(Registered {
            claim,
            replayed,
            same_image,
        })
    }

    async fn get_claim(&self, id: u64) -> Result<Option<ClaimView>> {
        Ok(self.cached_claim(id)?.map(SharedClaim::into_view))
    }

    async fn get_status(&self, id: u64) -> Result<Option<StatusView>> {
        let status = self
            .derived
            .status_cache
            .get_or_read(id, || self.read_status(id))?;
        Ok(status.map(Arc::unwrap_or_clone))
    }

    async fn list_claims(
        &self,
        state: Option<VerificationState>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<ClaimView>> {
        let before = before.unwrap_or(u64::MAX);
        match state {
            None => {
                let range = (Bound::Unbounded, Bound::Excluded(be(before).to_vec()));
                self.claims_desc(Table::Claims, range, 0, limit)
            }
            Some(state) => {
                let start = state_key(state as i32, 0);
                let end = state_key(state as i32, before);
                self.claims_desc(Table::ClaimsByState, span(&start, &end), 1, limit)
            }
        }
    }

    async fn list_claims_oldest_first(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<ClaimView>> {
        let Some(start) = after.unwrap_or(0).checked_add(1) else {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        };
        let range = (Bound::Included(be(start).to_vec()), Bound::Unbounded);
        let scan = self.engine.scan(Table::Claims, range, false);
        Self::page(scan, limit, "claims", |key, value| {
            let id = u64_at(key, 0);
            Ok((id, crate::store::schema::claim_view(value, id)?))
        })
    }

    async fn attach_response(&self, cmd: NewResponse) -> Result<Attached> {
        let draft_bytes = cmd.response.encode_to_vec();
        let fp = fingerprint(&[&be(cmd.claim_id), &draft_bytes]);
        let request_key =
            (!cmd.request_id.is_empty()).then(|| request_key(OP_ATTACH, cmd.request_id.as_bytes()));
        type Out = (u64, u64, u64, Option<(Claim, OfficialResponse)>);
        let after = self.derived.after(
            |derived, (_, _, _, committed): &Out| {
                if let Some((claim, response)) = committed {
                    derived.follow(Change {
                        claim,
                        latest_response: Some(response.clone()),
                        new_hash: None,
                    });
                }
            },
            |(_, _, position, _): &Out| *position,
        );
        let Committed {
            value: (claim_id, response_id, _, committed),
            durable,
        } = self
            .engine
            .commit(
                move |tx: &dyn WriteTx| {
                    let key = request_key.as_deref();
                    if let Some(record) = check_request_id(tx, key, &fp)? {
                        return Ok((record.claim_id, record.response_id, 0, None));
                    }
                    let (mut claim, _) = load_claim(tx, cmd.claim_id)?;
                    let old_state = claim.state;
                    let mut response = cmd.response.clone();
                    let event =
                        rules::attach(&mut claim, &mut response, &cmd.actor, Timestamp::now())?;
                    reindex_state(tx, &claim, old_state)?;
                    let encoded = response.encode_to_vec();
                    tx.insert(Table::Responses, &pair(claim.id, response.id), &encoded)?;
                    let position = append_event(tx, &mut claim, &encoded, event)?;
                    remember_request(tx, key, &fp, claim.id, response.id)?;
                    Ok((claim.id, response.id, position, Some((claim, response))))
                },
                after,
            )
            .await?;
        let replayed = committed.is_none();
        let response = match committed {
            Some((_, response)) => response,
            None => {
                let at = format!("claims/{claim_id}/officialResponses/{response_id}");
                let bytes = self
                    .get(Table::Responses, &pair(claim_id, response_id), || {
                        at.clone()
                    })?
                    .ok_or_else(|| Error::Internal("response vanished after commit".into()))?;
                decode(bytes.as_ref(), &at)?
            }
        };
        durable?;
        Ok(Attached { response, replayed })
    }

    async fn list_responses(
        &self,
        claim_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<OfficialResponse>> {
        self.list_children(
            Table::Responses,
            claim_id,
            after,
            limit,
            "officialResponses",
        )
    }

    async fn set_verdict(&self, cmd: NewVerdict) -> Result<ClaimView> {
        type Out = (u64, Claim, Option<OfficialResponse>);
        let after = self.derived.after(
            |derived, (_, claim, latest): &Out| {
                derived.follow(Change {
                    claim,
                    latest_response: latest.clone(),
                    new_hash: None,
                })
            },
            |(position, _, _): &Out| *position,
        );
        let Committed {
            value: (_, claim, latest_response),
            durable,
        } = self
            .engine
            .commit(
                move |tx: &dyn WriteTx| {
                    let (mut claim, latest) = load_claim(tx, cmd.claim_id)?;
                    let old_state = claim.state;
                    let event = rules::set_verdict(
                        &mut claim,
                        cmd.verdict.clone(),
                        cmd.etag.as_deref(),
                        &cmd.actor,
                        Timestamp::now(),
                    )?;
                    // The copy of the latest response is carried over as it is;
                    // decoded here so that a damaged copy refuses the verdict
                    // instead of committing one the caches cannot show.
                    let latest_response = match latest.is_empty() {
                        true => None,
                        false => Some(tx_decode(
                            &latest,
                            &format!(
                                "claims/{} (its copy of the latest official response)",
                                cmd.claim_id
                            ),
                        )?),
                    };
                    reindex_state(tx, &claim, old_state)?;
                    let position = append_event(tx, &mut claim, &latest, event)?;
                    Ok((position, claim, latest_response))
                },
                after,
            )
            .await?;
        durable?;
        Ok(ClaimView {
            claim,
            latest_response,
        })
    }

    async fn list_events(
        &self,
        claim_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<ClaimEvent>> {
        self.list_children(Table::Events, claim_id, after, limit, "events")
    }

    async fn find_similar(&self, query: SimilarQuery) -> Result<Vec<Similar>> {
        self.similar(&query).await
    }

    async fn log_events(
        &self,
        after: u64,
        up_to: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<LogBatch> {
        let mut batch = LogBatch {
            events: Vec::new(),
            examined_to: after,
        };
        if after >= up_to {
            return Ok(batch);
        }
        if let Some(claim_id) = filter.claim_id {
            // One claim: its own events (tens), not the whole log.
            let range = span_inclusive(&pair(claim_id, 0), &pair(claim_id, u64::MAX));
            for entry in self.engine.scan(Table::Events, range, false) {
                let (key, value) = entry.map_err(|e| e.at(&format!("claims/{claim_id}/events")))?;
                let at = format!("claims/{claim_id}/events/{}", u64_at(key.as_ref(), 8));
                let event: ClaimEvent = decode(value.as_ref(), &at)?;
                let position = event.log_position;
                if position <= after
                    || position > up_to
                    || !filter.accepts(claim_id, event.event_type)
                {
                    continue;
                }
                if batch.events.len() == limit {
                    batch.examined_to = position - 1;
                    return Ok(batch);
                }
                batch.events.push(event);
            }
            batch.examined_to = up_to;
            return Ok(batch);
        }
        let mut examined = 0;
        let range = span_inclusive(&be(after + 1), &be(up_to));
        for entry in self.engine.scan(Table::EventLog, range, false) {
            let (key, value) = entry.map_err(|e| {
                e.at(&format!(
                    "event_log (the entry after {})",
                    batch.examined_to
                ))
            })?;
            let (position, value) = (u64_at(key.as_ref(), 0), value.as_ref());
            if value.len() != LOG_ENTRY_LEN {
                return Err(Error::Internal(format!(
                    "malformed event_log entry at {position}"
                )));
            }
            let (claim_id, sequence) = (u64_at(value, 0), u64_at(value, 8));
            if filter.accepts(claim_id, i32::from(value[16])) {
                if batch.events.len() == limit {
                    break;
                }
                let at = format!("claims/{claim_id}/events/{sequence}");
                let bytes = self
                    .get(Table::Events, &pair(claim_id, sequence), || at.clone())?
                    .ok_or_else(|| {
                        Error::Internal(format!("event_log {position} names a missing event"))
                    })?;
                batch.events.push(decode(bytes.as_ref(), &at)?);
            }
            batch.examined_to = position;
            examined += 1;
            if examined == LOG_SCAN_LIMIT {
                break;
            }
        }
        if examined < LOG_SCAN_LIMIT && batch.events.len() < limit {
            batch.examined_to = up_to;
        }
        Ok(batch)
    }

    fn durable_log(&self) -> tokio::sync::watch::Receiver<u64> {
        self.derived.durable_log.subscribe()
    }

    async fn snapshot_claims(
        &self,
        up_to: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<ClaimHistory>> {
        let mut items = Vec::new();
        let Some(start) = after.unwrap_or(0).checked_add(1) else {
            return Ok(Page {
                items,
                next_cursor: None,
            });
        };
        let range = (Bound::Included(be(start).to_vec()), Bound::Unbounded);
        for entry in self.engine.scan(Table::Claims, range, false) {
            if items.len() == limit {
                return Ok(Page {
                    next_cursor: items
                        .last()
                        .and_then(|h: &ClaimHistory| h.claim.as_ref().map(|c| c.id)),
                    items,
                });
            }
            let (key, value) = entry.map_err(|e| match &items.last() {
                Some(ClaimHistory {
                    claim: Some(claim), ..
                }) => e.at(&format!("claims (the entry after claims/{})", claim.id)),
                _ => e.at("claims"),
            })?;
            let id = u64_at(key.as_ref(), 0);
            let mut events = Vec::new();
            let range = span_inclusive(&pair(id, 0), &pair(id, u64::MAX));
            for entry in self.engine.scan(Table::Events, range, false) {
                let (key, value) = entry.map_err(|e| e.at(&format!("claims/{id}/events")))?;
                let at = format!("claims/{id}/events/{}", u64_at(key.as_ref(), 8));
                let event: ClaimEvent = decode(value.as_ref(), &at)?;
                if event.log_position > up_to {
                    break;
                }
                events.push(event);
            }
            if events.is_empty() {
                // Registered after `up_to`: so is every later claim.
                break;
            }
            let attached = events
                .iter()
                .filter(|e| matches!(e.details, Some(EventDetails::ResponseAttached(_))))
                .count();
            let responses = self
                .list_children(Table::Responses, id, None, attached, "officialResponses")?
                .items;
            let stored: Claim = decode(value.as_ref(), &format!("claims/{id}"))?;
            let claim =
                crate::domain::history::replay(&stored, &events, &responses).map_err(|b| {
                    Error::DataLoss(format!(
                        "claims/{id}: audit trail broken ({b}); run `photoclaim check`"
                    ))
                })?;
            items.push(ClaimHistory {
                claim: Some(claim),
                responses,
                events,
            });
        }
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    async fn log_head(&self, position: u64) -> Result<chain::Hash> {
        if position == 0 {
            return Ok(chain::GENESIS);
        }
        let entry = self.get(Table::EventLog, &be(position), || {
            format!("event_log/{position}")
        })?;
        let entry =
            entry.ok_or_else(|| Error::Internal(format!("event_log has no entry {position}")))?;
        log_head(entry.as_ref())
    }

    async fn request_records(
        &self,
        after: Option<RequestRecord>,
        limit: usize,
    ) -> Result<Vec<RequestRecord>> {
        let start = match &after {
            Some(r) => Bound::Excluded(request_key(
                if r.attach { OP_ATTACH } else { OP_REGISTER },
                &r.request_id,
            )),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for entry in self
            .engine
            .scan(Table::RequestIds, (start, Bound::Unbounded), false)
        {
            if out.len() == limit {
                break;
            }
            let (key, value) = entry.map_err(|e| e.at("request_ids"))?;
            let key = key.as_ref();
            let record: IdempotencyRecord = decode(value.as_ref(), "request_ids record")?;
            out.push(RequestRecord {
                attach: key.first() == Some(&OP_ATTACH),
                request_id: key[1..].to_vec(),
                fingerprint: record.fingerprint,
                claim_id: record.claim_id,
                response_id: record.response_id,
            });
        }
        Ok(out)
    }

    async fn create_key(&self, key: ApiKey) -> Result<ApiKey> {
        let name_key = key.name.to_ascii_lowercase();
        let record = key.clone();
        let nothing = After {
            committed: |_: &()| {},
            durable: |_: &()| {},
        };
        let committed = self
            .engine
            .commit(
                move |tx: &dyn WriteTx| {
                    if tx.get(Table::ApiKeyNames, name_key.as_bytes())?.is_some() {
                        return Err(TxError::Abort(Error::AlreadyExists(format!(
                            "an API key named {:?} exists, in this or another case (names of revoked keys stay taken)",
                            record.name
                        ))));
                    }
                    if tx.get(Table::ApiKeys, &be(record.id))?.is_some() {
                        // 64 random bits collided: vanishingly rare; the caller may retry.
                        return Err(TxError::Abort(Error::Internal("API key id collision".into())));
                    }
                    tx.insert(Table::ApiKeys, &be(record.id), &record.encode_to_vec())?;
                    tx.insert(Table::ApiKeyNames, name_key.as_bytes(), &be(record.id))?;
                    Ok(())
                },
                nothing,
            )
            .await?;
        // Committed: calls without credentials are refused from now on,
        // as they would be by a read of the table.
        self.keys_exist.store(true, Ordering::Release);
        committed.durable?;
        Ok(key)
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>> {
        let mut keys = Vec::new();
        for entry in self.engine.scan(Table::ApiKeys, all(), false) {
            let (key, value) = entry.map_err(|e| e.at("api_keys"))?;
            let at = match key.as_ref().len() {
                8 => format!("api_keys/{}", u64_at(key.as_ref(), 0)),
                _ => "api_keys".to_string(),
            };
            keys.push(decode::<ApiKey>(value.as_ref(), &at)?);
        }
        keys.sort_by_key(|k| (k.create_time, k.name.clone()));
        Ok(keys)
    }

    async fn revoke_key(&self, name: &str, actor: &str) -> Result<ApiKey> {
        let (name, actor) = (name.to_string(), actor.to_string());
        let nothing = After {
            committed: |_: &ApiKey| {},
            durable: |_: &ApiKey| {},
        };
        let committed = self
            .engine
            .commit(
                move |tx: &dyn WriteTx| {
                    let name_key = name.to_ascii_lowercase();
                    let Some(id) = tx.get(Table::ApiKeyNames, name_key.as_bytes())? else {
                        return Err(TxError::Abort(Error::NotFound(format!("API key {name:?}"))));
                    };
                    let Some(bytes) = tx.get(Table::ApiKeys, &id)? else {
                        return Err(TxError::Abort(Error::Internal(format!(
                            "API key {name:?} has no record"
                        ))));
                    };
                    let mut key: ApiKey =
                        tx_decode(&bytes, &format!("api_keys (the key named {name:?})"))?;
                    if key.revoke_time.is_none() {
                        key.revoke_time = Some(Timestamp::now());
                        key.revoked_by = actor.clone();
                        tx.insert(Table::ApiKeys, &id, &key.encode_to_vec())?;
                    }
                    Ok(key)
                },
                nothing,
            )
            .await?;
        committed.durable?;
        Ok(committed.value)
    }

    async fn find_key(&self, id: u64) -> Result<Option<ApiKey>> {
        let at = || format!("api_keys/{id}");
        self.get(Table::ApiKeys, &be(id), at)?
            .map(|bytes| decode(bytes.as_ref(), &at()))
            .transpose()
    }

    async fn has_keys(&self) -> Result<bool> {
        if self.keys_exist.load(Ordering::Acquire) {
            return Ok(true);
        }
        if !self.derived.shared {
            return Ok(false);
        }
        // Another replica may have made the first key.
        let found = self
            .engine
            .first(Table::ApiKeys, all(), false)
            .map_err(|e| e.at("api_keys"))?
            .is_some();
        if found {
            self.keys_exist.store(true, Ordering::Release);
        }
        Ok(found)
    }

    fn page_token_key(&self) -> PageTokenKey {
        self.page_token_key
    }

    async fn stats(&self) -> Result<StoreStats> {
        let last = self.get(Table::Meta, META_LAST_CLAIM_ID, || "meta".into())?;
        Ok(StoreStats {
            // Claim ids are dense from 1 and claims are never deleted.
            claims: last.map_or(0, |v| u64_at(v.as_ref(), 0)),
            bytes_on_disk: self.engine.size().map_err(|e| e.at("the data"))?,
            disk_free_bytes: None,
        })
    }

    /// Always writable: a handle over the engine (`SledStore`) watches the disk.
    async fn import_reviews(
        &self,
        reviews: Vec<ExternalReview>,
        actor: String,
    ) -> Result<Vec<ImportedReview>> {
        self.import_reviews_now(reviews, actor).await
    }

    async fn get_review(&self, id: u64) -> Result<Option<ExternalReview>> {
        self.read_review(id)
    }

    async fn list_reviews(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<ExternalReview>> {
        self.reviews_desc(before, limit)
    }

    async fn review_log(&self, after: u64, limit: usize) -> Result<Vec<(u64, ReviewChange)>> {
        self.review_log_after(after, limit)
    }

    async fn review_log_head(&self) -> Result<u64> {
        self.review_log_newest()
    }

    fn writability(&self) -> tokio::sync::watch::Receiver<Writability> {
        self.writability.subscribe()
    }

    async fn close(&self) -> Result<()> {
        self.engine.close().await
    }
}
