//! Minimum vertex cover of a bipartite graph, exactly: a maximum matching (Hopcroft–Karp), then
//! König's construction.
//!
//! The planner uses it to group new (device, customer) assignments into the fewest calls: each
//! call covers the pairs of one customer (assignDevicesToOwner) or of one device
//! (assignDeviceToOwners), so the fewest calls is the smallest set of customers and devices
//! touching every pair. Pure and allocation-light: vertices are indices.

use std::collections::VecDeque;

const NIL: u32 = u32::MAX;

/// A minimum vertex cover of the bipartite graph with `left` + `right` vertices and `edges`
/// (left index, right index). Returns which left and which right vertices are in the cover.
pub fn min_vertex_cover(left: usize, right: usize, edges: &[(u32, u32)]) -> (Vec<bool>, Vec<bool>) {
    // Adjacency of the left side, compressed.
    let mut start = vec![0u32; left + 1];
    for &(l, _) in edges {
        start[l as usize + 1] += 1;
    }
    for i in 0..left {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut adj = vec![0u32; edges.len()];
    for &(l, r) in edges {
        adj[fill[l as usize] as usize] = r;
        fill[l as usize] += 1;
    }
    let neighbours = |l: usize| &adj[start[l] as usize..start[l + 1] as usize];

    let mut match_l = vec![NIL; left];
    let mut match_r = vec![NIL; right];
    // A greedy start: most of these graphs are stars and single edges.
    for (l, m) in match_l.iter_mut().enumerate() {
        if let Some(&r) = neighbours(l).iter().find(|&&r| match_r[r as usize] == NIL) {
            *m = r;
            match_r[r as usize] = l as u32;
        }
    }
    let mut dist = vec![u32::MAX; left];
    let mut queue = VecDeque::new();
    let mut iter = vec![0u32; left];
    let mut stack: Vec<u32> = Vec::new();
    loop {
        // BFS from free left vertices, layering by alternating paths.
        queue.clear();
        for l in 0..left {
            if match_l[l] == NIL {
                dist[l] = 0;
                queue.push_back(l as u32);
            } else {
                dist[l] = u32::MAX;
            }
        }
        let mut found = false;
        while let Some(l) = queue.pop_front() {
            for &r in neighbours(l as usize) {
                let m = match_r[r as usize];
                if m == NIL {
                    found = true;
                } else if dist[m as usize] == u32::MAX {
                    dist[m as usize] = dist[l as usize] + 1;
                    queue.push_back(m);
                }
            }
        }
        if !found {
            break;
        }
        // DFS (iterative) for vertex-disjoint shortest augmenting paths.
        for (l, i) in iter.iter_mut().enumerate() {
            *i = start[l];
        }
        for free in 0..left {
            if match_l[free] != NIL {
                continue;
            }
            stack.clear();
            stack.push(free as u32);
            while let Some(&l) = stack.last() {
                let l = l as usize;
                let end = start[l + 1];
                let mut advanced = false;
                while iter[l] < end {
                    let r = adj[iter[l] as usize];
                    iter[l] += 1;
                    let m = match_r[r as usize];
                    if m == NIL {
                        // Augment along the stack.
                        let mut r = r;
                        while let Some(u) = stack.pop() {
                            let prev = match_l[u as usize];
                            match_l[u as usize] = r;
                            match_r[r as usize] = u;
                            r = prev;
                        }
                        advanced = true;
                        break;
                    } else if dist[m as usize] == dist[l] + 1 {
                        stack.push(m);
                        advanced = true;
                        break;
                    }
                }
                if !advanced {
                    dist[l] = u32::MAX;
                    stack.pop();
                }
            }
        }
    }
    // König: Z = vertices reachable from free left vertices by alternating paths.
    let mut seen_l = vec![false; left];
    let mut seen_r = vec![false; right];
    queue.clear();
    for l in 0..left {
        if match_l[l] == NIL {
            seen_l[l] = true;
            queue.push_back(l as u32);
        }
    }
    while let Some(l) = queue.pop_front() {
        for &r in neighbours(l as usize) {
            if !seen_r[r as usize] {
                seen_r[r as usize] = true;
                let m = match_r[r as usize];
                if m != NIL && !seen_l[m as usize] {
                    seen_l[m as usize] = true;
                    queue.push_back(m);
                }
            }
        }
    }
    let cover_l = seen_l.iter().map(|s| !s).collect();
    (cover_l, seen_r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(c: &(Vec<bool>, Vec<bool>)) -> usize {
        c.0.iter().chain(&c.1).filter(|x| **x).count()
    }

    fn covers(c: &(Vec<bool>, Vec<bool>), edges: &[(u32, u32)]) -> bool {
        edges.iter().all(|&(l, r)| c.0[l as usize] || c.1[r as usize])
    }

    /// Brute force over all subsets, for small graphs.
    fn brute(left: usize, right: usize, edges: &[(u32, u32)]) -> usize {
        let n = left + right;
        (0u32..1 << n)
            .filter(|mask| edges.iter().all(|&(l, r)| mask & (1 << l) != 0 || mask & (1 << (left + r as usize)) != 0))
            .map(|m| m.count_ones() as usize)
            .min()
            .unwrap_or(0)
    }

    #[test]
    fn stars_and_shared_devices() {
        // One customer with three devices: the customer alone.
        let e = [(0, 0), (0, 1), (0, 2)];
        let c = min_vertex_cover(1, 3, &e);
        assert_eq!((size(&c), c.0[0]), (1, true));
        // One device shared by three customers: the device alone.
        let e = [(0, 0), (1, 0), (2, 0)];
        let c = min_vertex_cover(3, 1, &e);
        assert_eq!((size(&c), c.1[0]), (1, true));
    }

    #[test]
    fn matches_brute_force_on_many_small_graphs() {
        let mut seed = 0x1234_5678_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let (left, right) = (1 + next() as usize % 6, 1 + next() as usize % 6);
            let mut edges: Vec<(u32, u32)> =
                (0..next() % 14).map(|_| ((next() % left as u64) as u32, (next() % right as u64) as u32)).collect();
            edges.sort();
            edges.dedup();
            let c = min_vertex_cover(left, right, &edges);
            assert!(covers(&c, &edges), "{edges:?}");
            assert_eq!(size(&c), brute(left, right, &edges), "{left}x{right} {edges:?}");
        }
    }
}
