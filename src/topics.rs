//! Topics of a context: which members (connections) subscribe to which
//! topic, for publish's fan-out.
//!
//! Members are any small copyable keys, each subscription carrying a
//! copyable value given when it was made (the hub's: the connection's C
//! handle, so that the fan-out looks nothing up); the registry never looks
//! behind them.  Subscribing, unsubscribing and removing a member are O(1)
//! per topic (a topic keeps its members in a vector, for a fast fan-out,
//! and each member's place in it).

use std::collections::HashMap;
use std::hash::Hash;

/// A topic's name: bytes, as Perl gave them.
pub type TopicName = Box<[u8]>;

#[derive(Debug)]
struct Topic<K, V> {
    members: Vec<(K, V)>,
    place: HashMap<K, usize>,
}

#[derive(Debug)]
pub struct Topics<K, V> {
    by_name: HashMap<TopicName, Topic<K, V>>,
    /// Each member's topics, in the order it subscribed.
    of_member: HashMap<K, Vec<TopicName>>,
}

impl<K, V> Default for Topics<K, V> {
    fn default() -> Self {
        Topics {
            by_name: HashMap::new(),
            of_member: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash, V: Copy> Topics<K, V> {
    /// Subscribe `member` to `topic`, with `value`; false if it already
    /// was (the value it had stays).
    pub fn subscribe(&mut self, member: K, value: V, topic: &[u8]) -> bool {
        let entry = self.by_name.entry(topic.into()).or_insert_with(|| Topic {
            members: Vec::new(),
            place: HashMap::new(),
        });
        if entry.place.contains_key(&member) {
            return false;
        }
        entry.place.insert(member, entry.members.len());
        entry.members.push((member, value));
        self.of_member.entry(member).or_default().push(topic.into());
        true
    }

    /// Unsubscribe `member` from `topic`; false if it was not subscribed.
    pub fn unsubscribe(&mut self, member: K, topic: &[u8]) -> bool {
        if !self.leave(member, topic) {
            return false;
        }
        if let Some(names) = self.of_member.get_mut(&member) {
            names.retain(|n| &**n != topic);
            if names.is_empty() {
                self.of_member.remove(&member);
            }
        }
        true
    }

    /// End every subscription of `member` (its connection is gone),
    /// telling `emptied` each topic it was the last subscriber of.
    pub fn remove(&mut self, member: K, mut emptied: impl FnMut(&[u8])) {
        for name in self.of_member.remove(&member).unwrap_or_default() {
            self.leave(member, &name);
            if !self.by_name.contains_key(&name) {
                emptied(&name);
            }
        }
    }

    /// Take `member` out of `topic`'s members; a topic left empty goes.
    fn leave(&mut self, member: K, topic: &[u8]) -> bool {
        let Some(t) = self.by_name.get_mut(topic) else {
            return false;
        };
        let Some(i) = t.place.remove(&member) else {
            return false;
        };
        t.members.swap_remove(i);
        if let Some(&(moved, _)) = t.members.get(i) {
            t.place.insert(moved, i);
        }
        if t.members.is_empty() {
            self.by_name.remove(topic);
        }
        true
    }

    /// The members subscribed to `topic`, with their values.
    pub fn subscribers(&self, topic: &[u8]) -> &[(K, V)] {
        self.by_name.get(topic).map_or(&[], |t| &t.members)
    }

    /// The topics `member` subscribes to, in the order it subscribed.
    pub fn topics_of(&self, member: K) -> &[TopicName] {
        self.of_member.get(&member).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(s: &[(u32, char)]) -> Vec<u32> {
        let mut v: Vec<u32> = s.iter().map(|&(m, _)| m).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn subscribe_once_per_topic() {
        let mut t = Topics::default();
        assert!(t.subscribe(1, 'v', b"news"));
        assert!(!t.subscribe(1, 'v', b"news"));
        assert!(t.subscribe(2, 'v', b"news"));
        assert!(t.subscribe(1, 'v', b"sport"));
        assert_eq!(sorted(t.subscribers(b"news")), [1, 2]);
        assert_eq!(
            t.topics_of(1),
            [b"news".as_slice().into(), b"sport".as_slice().into()]
        );
        assert!(t.subscribers(b"none").is_empty());
    }

    #[test]
    fn unsubscribe_keeps_the_others() {
        let mut t = Topics::default();
        for m in 0..5 {
            t.subscribe(m, 'v', b"a");
        }
        assert!(t.unsubscribe(1, b"a"));
        assert!(!t.unsubscribe(1, b"a"));
        assert!(!t.unsubscribe(9, b"b"));
        assert_eq!(sorted(t.subscribers(b"a")), [0, 2, 3, 4]);
        assert!(t.topics_of(1).is_empty());
        // the moved member's place was updated: removing it works
        assert!(t.unsubscribe(4, b"a"));
        assert!(t.unsubscribe(0, b"a"));
        assert_eq!(sorted(t.subscribers(b"a")), [2, 3]);
    }

    #[test]
    fn remove_ends_every_subscription_and_empty_topics_go() {
        let mut t = Topics::default();
        t.subscribe(7, 'v', b"x");
        t.subscribe(7, 'v', b"y");
        t.subscribe(8, 'v', b"y");
        let mut emptied = Vec::new();
        t.remove(7, |n| emptied.push(n.to_vec()));
        assert_eq!(emptied, [b"x".to_vec()]);
        assert!(t.topics_of(7).is_empty());
        assert!(t.subscribers(b"x").is_empty());
        assert!(!t.by_name.contains_key(b"x".as_slice()));
        assert_eq!(t.subscribers(b"y"), [(8, 'v')]);
        t.remove(7, |_| panic!("nothing left")); // no-op
        t.remove(8, |_| {});
        assert!(t.by_name.is_empty() && t.of_member.is_empty());
    }

    #[test]
    fn many_members_come_and_go() {
        let mut t = Topics::default();
        for m in 0..10_000u32 {
            t.subscribe(m, 'v', b"big");
        }
        for m in (0..10_000u32).filter(|m| m % 3 == 0) {
            t.remove(m, |_| {});
        }
        let left = t.subscribers(b"big");
        assert_eq!(left.len(), 10_000 - 3334);
        assert!(left.iter().all(|&(m, _)| m % 3 != 0));
    }
}
