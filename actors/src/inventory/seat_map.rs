//! The seats of one seated section: who owns each seat, and a bitmap of free seats per row
//! so that best-available can find N adjacent seats with a handful of word operations
//! instead of a walk over every seat.

use std::collections::HashMap;

use crate::types::{BookingId, HoldId, SeatId};

/// Who owns a seat right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeatOwner {
    Free,
    Held(HoldId),
    Booked(BookingId),
}

/// One row as it is created or loaded: a label, its front-to-back index, and its seats in
/// left-to-right order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSpec {
    pub label: String,
    pub index: i32,
    /// `(seat id, seat number)`, ordered by seat number.
    pub seats: Vec<(SeatId, i32)>,
}

/// How best-available places a group in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The window nearest the row's centre, whatever it leaves beside it. What the engine
    /// did first; kept to measure the other against (`orphans_left_by_a_sellout_of_groups`).
    CentreFirst,
    /// Like `CentreFirst`, but never leaving a single free seat between taken ones (or
    /// against the row's end) when another window in the row, or in the next
    /// [`ORPHAN_LOOKBACK_ROWS`] rows that can seat the group, leaves none. A lone seat can
    /// only ever be sold to a buyer alone; in a sellout of pairs and groups it stays empty.
    AvoidOrphans,
}

/// How many rows behind the front-most one that can seat a group best-available looks for a
/// place that strands no seat.
pub const ORPHAN_LOOKBACK_ROWS: usize = 2;

/// A candidate window in a row.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// Row-relative first seat.
    start: u32,
    /// Lone free seats it would leave beside it (0–2).
    orphans: u32,
    /// Twice the distance of its centre from the row's centre.
    distance: u32,
}

/// A row of seats: a slice of the section's flat seat arrays plus its free-seat bitmap.
#[derive(Clone, Debug)]
struct Row {
    /// The label shown to buyers ("A", "B", … "AA").
    label: String,
    /// Front-to-back position; lower is closer to the stage.
    index: i32,
    /// First flat position of this row's seats.
    start: u32,
    /// Seats in the row.
    len: u32,
    /// Bit `i` set when seat `start + i` is free.
    free_bits: Vec<u64>,
    /// Number of set bits in `free_bits`, kept to skip full rows without scanning.
    free_count: u32,
}

impl Row {
    fn is_free(&self, i: u32) -> bool {
        self.free_bits[(i / 64) as usize] & (1u64 << (i % 64)) != 0
    }

    /// First index at or after `from` whose free bit equals `free`, or `len`.
    fn next_with(&self, from: u32, free: bool) -> u32 {
        if from >= self.len {
            return self.len;
        }
        let mut word_index = (from / 64) as usize;
        let flip = if free { 0 } else { u64::MAX };
        let mut word = (self.free_bits[word_index] ^ flip) & (u64::MAX << (from % 64));
        loop {
            if word != 0 {
                let found = word_index as u32 * 64 + word.trailing_zeros();
                return found.min(self.len);
            }
            word_index += 1;
            if word_index >= self.free_bits.len() {
                return self.len;
            }
            word = self.free_bits[word_index] ^ flip;
        }
    }

    /// Flat positions of `quantity` seats from row-relative `start`.
    fn window(&self, start: u32, quantity: u32) -> Vec<u32> {
        (0..quantity).map(|k| self.start + start + k).collect()
    }

    /// The best window of `quantity` free seats in this row: fewest lone seats left beside
    /// it (when avoiding them), then nearest the row's centre.
    fn best_window(&self, quantity: u32, placement: Placement) -> Option<Window> {
        // Twice the distance between a window's centre and the row's centre, so that
        // everything stays in integers: |2s + q - len| for a window starting at s.
        let ideal_start = (self.len.saturating_sub(quantity)) / 2;
        let mut best: Option<Window> = None;
        for (run_start, run_end) in self.free_runs() {
            if run_end - run_start < quantity {
                continue;
            }
            let last = run_end - quantity;
            let centre = ideal_start.clamp(run_start, last);
            // The centre-most start, and the starts that leave no gap of one on either side:
            // flush with an end of the run, or two seats in from it, or next to the centre.
            let candidates = [
                Some(centre),
                centre.checked_sub(1),
                centre.checked_add(1),
                centre.checked_sub(2),
                centre.checked_add(2),
                Some(run_start),
                run_start.checked_add(2),
                Some(last),
                last.checked_sub(2),
            ];
            let considered = match placement {
                Placement::CentreFirst => &candidates[..1],
                Placement::AvoidOrphans => &candidates[..],
            };
            for start in considered.iter().flatten().copied() {
                if start < run_start || start > last {
                    continue;
                }
                let orphans = match placement {
                    Placement::CentreFirst => 0,
                    Placement::AvoidOrphans => {
                        u32::from(start - run_start == 1) + u32::from(last - start == 1)
                    }
                };
                let window = Window {
                    start,
                    orphans,
                    distance: (2 * start + quantity).abs_diff(self.len),
                };
                if best.is_none_or(|b| (window.orphans, window.distance) < (b.orphans, b.distance))
                {
                    best = Some(window);
                }
            }
        }
        best
    }

    /// Maximal runs of free seats, as `[start, end)` row-relative indexes.
    fn free_runs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let start = self.next_with(at, true);
            if start >= self.len {
                return None;
            }
            let end = self.next_with(start, false);
            at = end;
            Some((start, end))
        })
    }
}

/// The seats of one seated section.
#[derive(Clone, Debug)]
pub struct SeatMap {
    /// Rows, front first.
    rows: Vec<Row>,
    /// Seat id by flat position.
    seat_ids: Vec<SeatId>,
    /// Seat number by flat position.
    numbers: Vec<i32>,
    /// Row (index into `rows`) by flat position.
    row_of: Vec<u32>,
    /// Owner by flat position.
    owners: Vec<SeatOwner>,
    /// Flat position by seat id.
    position: HashMap<SeatId, u32>,
    /// Free seats in the whole section.
    free_count: u32,
}

impl SeatMap {
    /// Builds a map with every seat free. Rows are sorted front first.
    pub fn new(mut rows: Vec<RowSpec>) -> Self {
        rows.sort_by_key(|r| r.index);
        let total: usize = rows.iter().map(|r| r.seats.len()).sum();
        let mut map = SeatMap {
            rows: Vec::with_capacity(rows.len()),
            seat_ids: Vec::with_capacity(total),
            numbers: Vec::with_capacity(total),
            row_of: Vec::with_capacity(total),
            owners: vec![SeatOwner::Free; total],
            position: HashMap::with_capacity(total),
            free_count: total as u32,
        };
        for spec in rows {
            let start = map.seat_ids.len() as u32;
            let len = spec.seats.len() as u32;
            let row_number = map.rows.len() as u32;
            for (id, number) in spec.seats {
                let previous = map.position.insert(id, map.seat_ids.len() as u32);
                assert!(previous.is_none(), "seat {id} appears twice");
                map.seat_ids.push(id);
                map.numbers.push(number);
                map.row_of.push(row_number);
            }
            let words = (len as usize).div_ceil(64);
            let mut free_bits = vec![u64::MAX; words];
            if !len.is_multiple_of(64) {
                free_bits[words - 1] = (1u64 << (len % 64)) - 1;
            }
            map.rows.push(Row {
                label: spec.label,
                index: spec.index,
                start,
                len,
                free_bits,
                free_count: len,
            });
        }
        map
    }

    /// Number of seats.
    pub fn capacity(&self) -> u32 {
        self.seat_ids.len() as u32
    }

    /// Number of free seats.
    pub fn free_count(&self) -> u32 {
        self.free_count
    }

    /// Flat position of a seat id, if the seat belongs to this section.
    pub fn position(&self, seat_id: SeatId) -> Option<u32> {
        self.position.get(&seat_id).copied()
    }

    /// Seat id at a flat position.
    pub fn seat_id(&self, position: u32) -> SeatId {
        self.seat_ids[position as usize]
    }

    /// Owner of the seat at a flat position.
    pub fn owner(&self, position: u32) -> SeatOwner {
        self.owners[position as usize]
    }

    /// Changes the owner of a seat, keeping the bitmaps and counts in step.
    pub fn set_owner(&mut self, position: u32, owner: SeatOwner) {
        let was_free = self.owners[position as usize] == SeatOwner::Free;
        let now_free = owner == SeatOwner::Free;
        self.owners[position as usize] = owner;
        if was_free == now_free {
            return;
        }
        let row = &mut self.rows[self.row_of[position as usize] as usize];
        let i = position - row.start;
        let bit = 1u64 << (i % 64);
        if now_free {
            row.free_bits[(i / 64) as usize] |= bit;
            row.free_count += 1;
            self.free_count += 1;
        } else {
            row.free_bits[(i / 64) as usize] &= !bit;
            row.free_count -= 1;
            self.free_count -= 1;
        }
    }

    /// The best `quantity` adjacent free seats in one row, leaving no lone seat where it can
    /// ([`Placement::AvoidOrphans`]). `None` when no row has that many free seats side by side.
    pub fn best_adjacent(&self, quantity: u32) -> Option<Vec<u32>> {
        self.best_adjacent_by(quantity, Placement::AvoidOrphans)
    }

    /// The best `quantity` adjacent free seats in one row, chosen by `placement`.
    pub fn best_adjacent_by(&self, quantity: u32, placement: Placement) -> Option<Vec<u32>> {
        if quantity == 0 {
            return None;
        }
        let mut first: Option<(&Row, Window)> = None;
        let mut rows_looked_at = 0;
        for row in &self.rows {
            if row.free_count < quantity {
                continue;
            }
            let Some(best) = row.best_window(quantity, placement) else {
                continue;
            };
            if best.orphans == 0 || placement == Placement::CentreFirst {
                return Some(row.window(best.start, quantity));
            }
            // This row would strand a seat: a row or two further back may seat the group
            // without doing so; further than that, a lone seat is the lesser harm.
            first.get_or_insert((row, best));
            rows_looked_at += 1;
            if rows_looked_at > ORPHAN_LOOKBACK_ROWS {
                break;
            }
        }
        first.map(|(row, best)| row.window(best.start, quantity))
    }

    /// The best `quantity` free seats wherever they are: front rows first, then nearest the
    /// centre. Used only when the buyer accepts split seats. `None` when fewer are free.
    pub fn best_scattered(&self, quantity: u32) -> Option<Vec<u32>> {
        if quantity == 0 || self.free_count < quantity {
            return None;
        }
        let mut picked = Vec::with_capacity(quantity as usize);
        for row in &self.rows {
            if row.free_count == 0 {
                continue;
            }
            let mut free: Vec<u32> = (0..row.len).filter(|&i| row.is_free(i)).collect();
            free.sort_by_key(|&i| (2 * i + 1).abs_diff(row.len));
            for i in free {
                picked.push(row.start + i);
                if picked.len() == quantity as usize {
                    return Some(picked);
                }
            }
        }
        None
    }

    /// Iterates every seat as `(row label, row index, seat id, seat number, owner)`, rows
    /// front first and seats left to right.
    pub fn seats(&self) -> impl Iterator<Item = (&str, i32, SeatId, i32, SeatOwner)> + '_ {
        self.rows.iter().flat_map(move |row| {
            (row.start..row.start + row.len).map(move |p| {
                let p = p as usize;
                (
                    row.label.as_str(),
                    row.index,
                    self.seat_ids[p],
                    self.numbers[p],
                    self.owners[p],
                )
            })
        })
    }

    /// Whether the flat positions are one unbroken run in one row.
    pub fn adjacent_in_one_row(&self, positions: &[u32]) -> bool {
        let mut sorted = positions.to_vec();
        sorted.sort_unstable();
        sorted.windows(2).all(|w| w[1] == w[0] + 1)
            && sorted.first().is_some_and(|&p| {
                self.row_of[p as usize] == self.row_of[sorted[sorted.len() - 1] as usize]
            })
    }

    /// Checks that the bitmaps and counts agree with the owners. Used by tests and debug
    /// assertions.
    pub fn check(&self) -> Result<(), String> {
        let mut total_free = 0;
        for row in &self.rows {
            let mut free = 0;
            for i in 0..row.len {
                let owner_free = self.owners[(row.start + i) as usize] == SeatOwner::Free;
                if owner_free != row.is_free(i) {
                    return Err(format!(
                        "row {} seat {i}: bitmap disagrees with owner",
                        row.label
                    ));
                }
                free += u32::from(owner_free);
            }
            if free != row.free_count {
                return Err(format!(
                    "row {}: free_count {} but {free} free",
                    row.label, row.free_count
                ));
            }
            total_free += free;
        }
        if total_free != self.free_count {
            return Err(format!(
                "free_count {} but {total_free} free",
                self.free_count
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(rows: u32, per_row: u32) -> SeatMap {
        let mut next_id = 1;
        let specs = (0..rows)
            .map(|r| RowSpec {
                label: crate::types::row_label(r),
                index: r as i32,
                seats: (1..=per_row as i32)
                    .map(|n| {
                        next_id += 1;
                        (next_id, n)
                    })
                    .collect(),
            })
            .collect();
        SeatMap::new(specs)
    }

    #[test]
    fn best_adjacent_takes_the_front_row_centre() {
        let m = map(3, 10);
        let seats = m.best_adjacent(2).unwrap();
        assert_eq!(seats, vec![4, 5], "seats 5 and 6 of row A");
    }

    #[test]
    fn best_adjacent_moves_back_when_the_front_row_is_broken_up() {
        let mut m = map(2, 10);
        // Leave only alternate seats free in row A.
        for p in (0..10).step_by(2) {
            m.set_owner(p, SeatOwner::Held(1));
        }
        assert_eq!(m.best_adjacent(2).unwrap(), vec![14, 15]);
        assert_eq!(m.best_scattered(2).unwrap().len(), 2);
        assert!(
            m.best_scattered(2).unwrap().iter().all(|&p| p < 10),
            "split seats stay in front"
        );
        m.check().unwrap();
    }

    #[test]
    fn rows_longer_than_a_word_are_searched_across_word_boundaries() {
        let mut m = map(1, 130);
        for p in 0..130 {
            if !(60..70).contains(&p) {
                m.set_owner(p, SeatOwner::Booked(9));
            }
        }
        assert_eq!(m.best_adjacent(10).unwrap(), (60..70).collect::<Vec<_>>());
        assert_eq!(m.best_adjacent(11), None);
        m.check().unwrap();
    }

    #[test]
    fn adjacency_is_checked_within_one_row() {
        let m = map(2, 4);
        assert!(m.adjacent_in_one_row(&[1, 2, 3]));
        assert!(
            !m.adjacent_in_one_row(&[3, 4]),
            "last of A and first of B are not neighbours"
        );
        assert!(!m.adjacent_in_one_row(&[0, 2]));
    }

    /// Seats left free when groups who never accept split seats buy best-available until
    /// nothing more can be sold to them: 30,000 arrivals of 2 to 6 people (pairs most
    /// often), deterministic from `seed`.
    fn sellout(rows: u32, per_row: u32, seed: u64, placement: Placement) -> u32 {
        let mut m = map(rows, per_row);
        let mut state = seed;
        let mut next = || {
            // xorshift64*: repeatable without a dependency.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        for _ in 0..30_000 {
            let quantity = match next() % 20 {
                0..=8 => 2,
                9..=11 => 3,
                12..=16 => 4,
                17 => 5,
                _ => 6,
            };
            if let Some(seats) = m.best_adjacent_by(quantity, placement) {
                for p in seats {
                    m.set_owner(p, SeatOwner::Booked(1));
                }
            }
            if m.free_count() == 0 {
                break;
            }
        }
        m.check().unwrap();
        m.free_count()
    }

    /// The figure README.md quotes: `cargo test -p boxoffice-engine orphans -- --nocapture`.
    #[test]
    fn orphans_left_by_a_sellout_of_groups() {
        let mut totals = (0, 0);
        for (rows, per_row) in [(20, 24), (30, 41), (10, 15)] {
            let (mut before, mut after) = (0, 0);
            for seed in 1..=10u64 {
                before += sellout(rows, per_row, seed, Placement::CentreFirst);
                after += sellout(rows, per_row, seed, Placement::AvoidOrphans);
            }
            eprintln!(
                "{rows} x {per_row} seats, 10 sellouts ({} seats): {before} left unsold centre-first, {after} avoiding orphans",
                10 * rows * per_row
            );
            totals.0 += before;
            totals.1 += after;
        }
        assert!(
            totals.1 * 2 < totals.0,
            "avoiding orphans leaves less than half the unsellable seats: {totals:?}"
        );
    }

    #[test]
    fn a_group_is_not_placed_where_it_would_strand_one_seat() {
        // Row A: seats 0..10, with 3 taken at the left: free run 3..10 (7 seats). A pair at
        // the centre (4, 5) would leave seat 3 alone; flush left (3, 4) leaves 5..10 (5).
        let mut m = map(2, 10);
        for p in 0..3 {
            m.set_owner(p, SeatOwner::Booked(1));
        }
        assert_eq!(
            m.best_adjacent_by(2, Placement::CentreFirst).unwrap(),
            vec![4, 5]
        );
        let seats = m.best_adjacent(2).unwrap();
        assert!(
            seats.iter().all(|&p| p < 10),
            "still the front row: {seats:?}"
        );
        let (lo, hi) = (seats[0], seats[1]);
        assert!(lo - 3 != 1 && 9 - hi != 1, "no lone seat beside {seats:?}");
        // A run of exactly three in the only row: a pair must strand one; it still sells.
        let mut tight = map(1, 3);
        assert_eq!(tight.best_adjacent(2).unwrap().len(), 2);
        tight.set_owner(0, SeatOwner::Booked(1));
        assert_eq!(
            tight.best_adjacent(2).unwrap(),
            vec![1, 2],
            "fills the run exactly"
        );
    }
}
