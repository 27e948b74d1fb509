//! Social reach from friend edges: degree, 2-hop reach and a PageRank-style
//! influence, over the undirected graph of one account.
use std::collections::{HashMap, HashSet};

pub struct Graph {
    index: HashMap<String, usize>,
    adj: Vec<Vec<usize>>,
}

impl Graph {
    /// Edges are (openid, friend openid); direction is ignored.
    pub fn new(edges: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut adj: Vec<HashSet<usize>> = Vec::new();
        let mut id = |s: String, adj: &mut Vec<HashSet<usize>>| {
            let n = index.len();
            *index.entry(s).or_insert_with(|| {
                adj.push(HashSet::new());
                n
            })
        };
        for (a, b) in edges {
            if a == b {
                continue;
            }
            let (a, b) = (id(a, &mut adj), id(b, &mut adj));
            adj[a].insert(b);
            adj[b].insert(a);
        }
        Self {
            index,
            adj: adj.into_iter().map(|s| s.into_iter().collect()).collect(),
        }
    }

    pub fn degree(&self, openid: &str) -> usize {
        self.index.get(openid).map_or(0, |&i| self.adj[i].len())
    }

    /// Distinct people within two hops, excluding the member.
    pub fn two_hop(&self, openid: &str) -> usize {
        let Some(&i) = self.index.get(openid) else {
            return 0;
        };
        let mut seen: HashSet<usize> = self.adj[i].iter().copied().collect();
        for &j in &self.adj[i] {
            seen.extend(self.adj[j].iter().copied());
        }
        seen.remove(&i);
        seen.len()
    }

    /// PageRank (damping 0.85, 30 iterations), scaled so the most
    /// influential person in the account has 1.
    pub fn influence(&self) -> HashMap<&str, f64> {
        let n = self.adj.len();
        if n == 0 {
            return HashMap::new();
        }
        let d = 0.85;
        let mut rank = vec![1.0 / n as f64; n];
        for _ in 0..30 {
            let dangling: f64 = (0..n)
                .filter(|&i| self.adj[i].is_empty())
                .map(|i| rank[i])
                .sum();
            let base = (1.0 - d) / n as f64 + d * dangling / n as f64;
            let mut next = vec![base; n];
            for (i, nbrs) in self.adj.iter().enumerate() {
                if nbrs.is_empty() {
                    continue;
                }
                let share = d * rank[i] / nbrs.len() as f64;
                for &j in nbrs {
                    next[j] += share;
                }
            }
            rank = next;
        }
        let max = rank
            .iter()
            .copied()
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
        self.index
            .iter()
            .map(|(k, &i)| (k.as_str(), rank[i] / max))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(edges: &[(&str, &str)]) -> Graph {
        Graph::new(
            edges
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned())),
        )
    }

    #[test]
    fn reach_counts_distinct_people_within_two_hops() {
        // a - b - c - d, and a - e
        let g = g(&[("a", "b"), ("b", "c"), ("c", "d"), ("a", "e"), ("b", "a")]);
        assert_eq!(g.degree("a"), 2);
        assert_eq!(g.two_hop("a"), 3); // b, e, c
        assert_eq!(g.two_hop("d"), 2); // c, b
        assert_eq!(g.two_hop("zzz"), 0);
    }

    #[test]
    fn the_hub_is_the_most_influential() {
        let g = g(&[
            ("hub", "a"),
            ("hub", "b"),
            ("hub", "c"),
            ("hub", "d"),
            ("a", "b"),
        ]);
        let inf = g.influence();
        assert!((inf["hub"] - 1.0).abs() < 1e-9);
        assert!(inf["c"] < inf["a"]);
        assert!(inf["c"] > 0.0);
    }
}
