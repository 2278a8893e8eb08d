//! Union-find over the tensor indices of one subgraph: the shared-scale groups of the
//! planner (`plan`, `params`, `sentinels`) and the one-width groups of `widths`. Its own
//! module so that `widths`, which `plan` uses, need not import `plan`.

/// Union-find over tensor indices of one subgraph.
pub(super) struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    pub fn new(n: usize) -> Self {
        Groups {
            parent: (0..n).collect(),
        }
    }
    pub fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }
    pub fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[rb.max(ra)] = rb.min(ra);
        }
    }
}
