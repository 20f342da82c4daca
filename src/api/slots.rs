//! Fair slots: a limit on things in use (calls in flight, open watch
//! streams) across all callers, per caller, and with a share only admins
//! may take, so that one key (or one anonymous address) cannot take every
//! slot and an operator can always act.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::domain::access::Role;

/// Who a slot is counted against: an API key's name, a client
/// certificate's subject, or `anonymous@IP` for callers without either
/// (open mode), with the role the caller has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The key the caller's slots are counted under.
    pub key: String,
    /// The caller's role (admins may use the reserved share).
    pub role: Role,
}

/// The limits of one kind of slot.
#[derive(Clone, Copy, Debug)]
pub struct SlotLimits {
    /// Slots in use at once across callers.
    pub total: usize,
    /// Slots one caller may hold at once.
    pub per_caller: usize,
    /// Of `total`, slots only admins may take.
    pub admin_reserve: usize,
}

impl SlotLimits {
    /// `total` and `per_caller`, with the admins' share derived from
    /// `total`: a sixteenth, at least one (when `total` allows).
    pub fn new(total: usize, per_caller: usize) -> Self {
        SlotLimits {
            total,
            per_caller: per_caller.max(1),
            admin_reserve: if total > 1 { (total / 16).max(1) } else { 0 },
        }
    }
}

/// Slots of one kind, shared by every call.
pub struct Slots {
    limits: SlotLimits,
    /// What `kind` is, for messages: "calls in flight", "watch streams".
    kind: &'static str,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    total: usize,
    by_caller: HashMap<String, usize>,
}

/// Why a slot was refused; the message for RESOURCE_EXHAUSTED.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl Slots {
    /// Slots under `limits`; `kind` names them in refusals.
    pub fn new(limits: SlotLimits, kind: &'static str) -> Arc<Self> {
        Arc::new(Slots {
            limits,
            kind,
            state: Mutex::new(State::default()),
        })
    }

    /// Takes a slot for `caller`, held until the returned guard drops.
    pub fn try_take(self: &Arc<Self>, caller: &Caller) -> Result<Slot, Refused> {
        let limits = self.limits;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.total >= limits.total {
            return Err(Refused(format!(
                "server busy: {} {} across callers (limit {}); retry with backoff",
                limits.total, self.kind, limits.total
            )));
        }
        if caller.role < Role::Admin && state.total >= limits.total - limits.admin_reserve {
            return Err(Refused(format!(
                "server busy: {} {} (the last {} are kept for admins); retry with backoff",
                limits.total - limits.admin_reserve,
                self.kind,
                limits.admin_reserve
            )));
        }
        let mine = state.by_caller.get(&caller.key).copied().unwrap_or(0);
        if mine >= limits.per_caller {
            return Err(Refused(format!(
                "this caller has {mine} {} already, the most one caller may have; \
                 retry once some have finished",
                self.kind
            )));
        }
        state.total += 1;
        state.by_caller.insert(caller.key.clone(), mine + 1);
        Ok(Slot {
            slots: self.clone(),
            caller: caller.key.clone(),
        })
    }

    /// Slots in use now: in all, and by `caller`.
    #[cfg(test)]
    fn in_use(&self, caller: &str) -> (usize, usize) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (
            state.total,
            state.by_caller.get(caller).copied().unwrap_or(0),
        )
    }
}

/// A slot in use; given back on drop.
pub struct Slot {
    slots: Arc<Slots>,
    caller: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self
            .slots
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.total -= 1;
        if let Some(n) = state.by_caller.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                state.by_caller.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(key: &str, role: Role) -> Caller {
        Caller {
            key: key.into(),
            role,
        }
    }

    #[test]
    fn one_caller_cannot_take_every_slot_and_admins_keep_a_share() {
        let slots = Slots::new(
            SlotLimits {
                total: 10,
                per_caller: 4,
                admin_reserve: 2,
            },
            "calls in flight",
        );
        let greedy = caller("greedy", Role::Reader);
        let mut held: Vec<Slot> = (0..4).map(|_| slots.try_take(&greedy).unwrap()).collect();
        let refused = slots.try_take(&greedy).err().unwrap();
        assert!(refused.0.contains("one caller"), "{refused:?}");
        // Others fill up to the admins' share...
        let other = caller("other", Role::Desk);
        let third = caller("third", Role::Ingest);
        held.extend((0..4).map(|_| slots.try_take(&other).unwrap()));
        let refused = slots.try_take(&third).err().unwrap();
        assert!(refused.0.contains("kept for admins"), "{refused:?}");
        // ... which an admin may still use, up to the total.
        let ops = caller("ops", Role::Admin);
        held.push(slots.try_take(&ops).unwrap());
        held.push(slots.try_take(&ops).unwrap());
        assert!(slots.try_take(&ops).is_err());
        assert_eq!(slots.in_use("ops"), (10, 2));
        // Slots come back on drop, and empty callers are forgotten.
        held.clear();
        assert_eq!(slots.in_use("greedy"), (0, 0));
        assert!(slots.state.lock().unwrap().by_caller.is_empty());
        assert!(slots.try_take(&greedy).is_ok());
    }

    #[test]
    fn the_admin_share_is_a_sixteenth_of_the_total() {
        assert_eq!(SlotLimits::new(512, 128).admin_reserve, 32);
        assert_eq!(SlotLimits::new(8, 8).admin_reserve, 1);
        assert_eq!(SlotLimits::new(1, 1).admin_reserve, 0);
    }
}
