//! [`Store`] for the engine: each method reads, or runs its write through
//! the committer ([`crate::store::batch_commit`]) in one transaction.

use super::*;

impl Store for SledEngine {
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
        let pdq_value = pdq.map(|(_, _, value)| value);
        let near_distance = cmd.near_distance;
        let (memory, on_durable) = (self.in_memory(), self.in_memory());
        let after = After {
            committed: move |(id, _, claim): &(u64, u64, Option<Claim>)| {
                if let Some(claim) = claim {
                    memory.cache(claim, None);
                    if let Some((hash, quality, _)) = pdq {
                        memory.index((*id, hash, quality));
                    }
                }
            },
            durable: move |(_, position, _): &(u64, u64, Option<Claim>)| {
                on_durable.log_durable(*position)
            },
        };
        let Committed {
            value: (id, _, committed),
            durable,
        } = self
            .committer
            .write(
                move |tx| {
                    let key = request_key.as_deref();
                    if let Some(record) = check_request_id(tx.request_ids, key, &fp)? {
                        return Ok((record.claim_id, 0, None));
                    }
                    let last = tx.meta.get(META_LAST_CLAIM_ID)?;
                    let id = last.map(|v| u64_at(&v, 0)).unwrap_or(0) + 1;
                    tx.meta.insert(META_LAST_CLAIM_ID, &be(id))?;
                    let mut claim = cmd.claim.clone();
                    let event = rules::register(&mut claim, id, &cmd.actor, Timestamp::now());
                    tx.by_state.insert(&state_key(claim.state, id), &[])?;
                    let position = append_event(tx, &mut claim, &[], event)?;
                    if let Some(sha) = &sha {
                        tx.by_sha256.insert(&sha_index_key(sha, id)[..], &[])?;
                    }
                    if let Some(value) = &pdq_value {
                        tx.by_pdq.insert(&be(id), &value[..])?;
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
        let same_image = self.same_image(&claim.claim, near_distance).await;
        // A replay's batch was flushed too, and that flush covers the
        // first call's commit.
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
        let status = self.status_cache.get_or_read(id, || self.read_status(id))?;
        Ok(status.map(Arc::unwrap_or_clone))
    }

    async fn list_claims(
        &self,
        state: Option<VerificationState>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<ClaimView>> {
        let before = before.unwrap_or(u64::MAX);
        let view = |id: u64| -> Result<(u64, ClaimView)> {
            let view = self
                .read_claim(id)?
                .ok_or_else(|| Error::Internal(format!("index names missing claim {id}")))?;
            Ok((id, view))
        };
        match state {
            None => Self::page(
                self.claims.range(..be(before)).rev(),
                limit,
                "claims",
                |key, _| view(u64_at(key, 0)),
            ),
            Some(state) => {
                let start = state_key(state as i32, 0);
                let end = state_key(state as i32, before);
                Self::page(
                    self.by_state
                        .range((Bound::Included(start), Bound::Excluded(end)))
                        .rev(),
                    limit,
                    "claims_by_state",
                    |key, _| view(u64_at(key, 1)),
                )
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
        Self::page(self.claims.range(be(start)..), limit, "claims", |key, _| {
            let id = u64_at(key, 0);
            let view = self
                .read_claim(id)?
                .ok_or_else(|| Error::Internal(format!("claim {id} vanished while listed")))?;
            Ok((id, view))
        })
    }

    async fn attach_response(&self, cmd: NewResponse) -> Result<Attached> {
        let draft_bytes = cmd.response.encode_to_vec();
        let fp = fingerprint(&[&be(cmd.claim_id), &draft_bytes]);
        let request_key =
            (!cmd.request_id.is_empty()).then(|| request_key(OP_ATTACH, cmd.request_id.as_bytes()));
        type Out = (u64, u64, u64, Option<(Claim, OfficialResponse)>);
        let (memory, on_durable) = (self.in_memory(), self.in_memory());
        let after = After {
            committed: move |(_, _, _, committed): &Out| {
                if let Some((claim, response)) = committed {
                    memory.cache(claim, Some(response.clone()));
                }
            },
            durable: move |(_, _, position, _): &Out| on_durable.log_durable(*position),
        };
        let Committed {
            value: (claim_id, response_id, _, committed),
            durable,
        } = self
            .committer
            .write(
                move |tx| {
                    let key = request_key.as_deref();
                    if let Some(record) = check_request_id(tx.request_ids, key, &fp)? {
                        return Ok((record.claim_id, record.response_id, 0, None));
                    }
                    let (mut claim, _) = load_claim(tx.claims, cmd.claim_id)?;
                    let old_state = claim.state;
                    let mut response = cmd.response.clone();
                    let event =
                        rules::attach(&mut claim, &mut response, &cmd.actor, Timestamp::now())
                            .map_err(ConflictableTransactionError::Abort)?;
                    reindex_state(tx.by_state, &claim, old_state)?;
                    let encoded = response.encode_to_vec();
                    tx.responses
                        .insert(&pair(claim.id, response.id), &encoded[..])?;
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
                let bytes = self
                    .responses
                    .get(pair(claim_id, response_id))
                    .map_err(|e| claim_storage(e, claim_id))?
                    .ok_or_else(|| Error::Internal("response vanished after commit".into()))?;
                decode(
                    &bytes,
                    &format!("claims/{claim_id}/officialResponses/{response_id}"),
                )?
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
        self.list_children(&self.responses, claim_id, after, limit, "officialResponses")
    }

    async fn set_verdict(&self, cmd: NewVerdict) -> Result<ClaimView> {
        type Out = (u64, Claim, Option<OfficialResponse>);
        let (memory, on_durable) = (self.in_memory(), self.in_memory());
        let after = After {
            committed: move |(_, claim, latest): &Out| memory.cache(claim, latest.clone()),
            durable: move |(position, _, _): &Out| on_durable.log_durable(*position),
        };
        let Committed {
            value: (_, claim, latest_response),
            durable,
        } = self
            .committer
            .write(
                move |tx| {
                    let (mut claim, latest) = load_claim(tx.claims, cmd.claim_id)?;
                    let old_state = claim.state;
                    let event = rules::set_verdict(
                        &mut claim,
                        cmd.verdict.clone(),
                        cmd.etag.as_deref(),
                        &cmd.actor,
                        Timestamp::now(),
                    )
                    .map_err(ConflictableTransactionError::Abort)?;
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
                    reindex_state(tx.by_state, &claim, old_state)?;
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
        self.list_children(&self.events, claim_id, after, limit, "events")
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
            for entry in self
                .events
                .range(pair(claim_id, 0)..=pair(claim_id, u64::MAX))
            {
                let (key, value) =
                    entry.map_err(|e| storage(e, &format!("claims/{claim_id}/events")))?;
                let event: ClaimEvent = decode(
                    &value,
                    &format!("claims/{claim_id}/events/{}", u64_at(&key, 8)),
                )?;
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
        for entry in self.event_log.range(be(after + 1)..=be(up_to)) {
            let (key, value) = entry.map_err(|e| {
                let at = format!("event_log (the entry after {})", batch.examined_to);
                storage(e, &at)
            })?;
            let position = u64_at(&key, 0);
            if value.len() != LOG_ENTRY_LEN {
                return Err(Error::Internal(format!(
                    "malformed event_log entry at {position}"
                )));
            }
            let (claim_id, sequence) = (u64_at(&value, 0), u64_at(&value, 8));
            if filter.accepts(claim_id, i32::from(value[16])) {
                if batch.events.len() == limit {
                    break;
                }
                let bytes = self
                    .events
                    .get(pair(claim_id, sequence))
                    .map_err(|e| storage(e, &format!("claims/{claim_id}/events/{sequence}")))?
                    .ok_or_else(|| {
                        Error::Internal(format!("event_log {position} names a missing event"))
                    })?;
                let at = format!("claims/{claim_id}/events/{sequence}");
                batch.events.push(decode(&bytes, &at)?);
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
        self.durable_log.subscribe()
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
        for entry in self.claims.range(be(start)..) {
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
                }) => storage(e, &format!("claims (the entry after claims/{})", claim.id)),
                _ => storage(e, "claims"),
            })?;
            let id = u64_at(&key, 0);
            let mut events = Vec::new();
            for entry in self.events.range(pair(id, 0)..=pair(id, u64::MAX)) {
                let (key, value) = entry.map_err(|e| storage(e, &format!("claims/{id}/events")))?;
                let at = format!("claims/{id}/events/{}", u64_at(&key, 8));
                let event: ClaimEvent = decode(&value, &at)?;
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
                .list_children(&self.responses, id, None, attached, "officialResponses")?
                .items;
            let stored: Claim = decode(&value, &format!("claims/{id}"))?;
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
        let entry = self
            .event_log
            .get(be(position))
            .map_err(|e| storage(e, &format!("event_log/{position}")))?;
        let entry =
            entry.ok_or_else(|| Error::Internal(format!("event_log has no entry {position}")))?;
        log_head(&entry)
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
            .request_ids
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
        {
            if out.len() == limit {
                break;
            }
            let (key, value) = entry.map_err(|e| storage(e, "request_ids"))?;
            let record: IdempotencyRecord = decode(&value, "request_ids record")?;
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
        let outcome = (&self.keys, &self.key_names).transaction(|(keys, names)| {
            if names.get(name_key.as_bytes())?.is_some() {
                return abort(Error::AlreadyExists(format!(
                    "an API key named {:?} exists, in this or another case (names of revoked keys stay taken)",
                    key.name
                )));
            }
            if keys.get(be(key.id))?.is_some() {
                // 64 random bits collided: vanishingly rare; the caller may retry.
                return abort(Error::Internal("API key id collision".into()));
            }
            keys.insert(&be(key.id), key.encode_to_vec())?;
            names.insert(name_key.as_bytes(), &be(key.id))?;
            Ok(())
        });
        finish_tx(outcome)?;
        // Committed: calls without credentials are refused from now on,
        // as they would be by a read of the tree.
        self.keys_exist.store(true, Ordering::Release);
        self.durable().await?;
        Ok(key)
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>> {
        let mut keys = Vec::new();
        for entry in self.keys.iter() {
            let (key, value) = entry.map_err(|e| storage(e, "api_keys"))?;
            let at = match key.len() {
                8 => format!("api_keys/{}", u64_at(&key, 0)),
                _ => "api_keys".to_string(),
            };
            keys.push(decode::<ApiKey>(&value, &at)?);
        }
        keys.sort_by_key(|k| (k.create_time, k.name.clone()));
        Ok(keys)
    }

    async fn revoke_key(&self, name: &str, actor: &str) -> Result<ApiKey> {
        let name_key = name.to_ascii_lowercase();
        let outcome = (&self.keys, &self.key_names).transaction(|(keys, names)| {
            let Some(id) = names.get(name_key.as_bytes())? else {
                return abort(Error::NotFound(format!("API key {name:?}")));
            };
            let Some(bytes) = keys.get(&id)? else {
                return abort(Error::Internal(format!("API key {name:?} has no record")));
            };
            let mut key: ApiKey = tx_decode(&bytes, &format!("api_keys (the key named {name:?})"))?;
            if key.revoke_time.is_none() {
                key.revoke_time = Some(Timestamp::now());
                key.revoked_by = actor.to_string();
                keys.insert(&id, key.encode_to_vec())?;
            }
            Ok(key)
        });
        let key = finish_tx(outcome)?;
        self.durable().await?;
        Ok(key)
    }

    async fn find_key(&self, id: u64) -> Result<Option<ApiKey>> {
        self.keys
            .get(be(id))
            .map_err(|e| storage(e, &format!("api_keys/{id}")))?
            .map(|bytes| decode(&bytes, &format!("api_keys/{id}")))
            .transpose()
    }

    async fn has_keys(&self) -> Result<bool> {
        Ok(self.keys_exist.load(Ordering::Acquire))
    }

    fn page_token_key(&self) -> PageTokenKey {
        self.page_token_key
    }

    async fn stats(&self) -> Result<StoreStats> {
        Ok(StoreStats {
            // Claim ids are dense from 1 and claims are never deleted.
            claims: self
                .meta
                .get(META_LAST_CLAIM_ID)
                .map_err(internal)?
                .map_or(0, |v| u64_at(&v, 0)),
            bytes_on_disk: self.db.size_on_disk().map_err(internal)?,
            disk_free_bytes: None,
        })
    }

    /// Always writable: [`crate::store::SledStore`] watches the disk.
    fn writability(&self) -> tokio::sync::watch::Receiver<crate::store::Writability> {
        tokio::sync::watch::channel(crate::store::Writability::Writable).1
    }

    async fn close(&self) -> Result<()> {
        self.db.flush_async().await.map(|_| ()).map_err(internal)
    }
}
