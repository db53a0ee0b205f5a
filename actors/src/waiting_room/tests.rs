//! The waiting room's rules, decided in memory with the time as an argument.

use super::*;

const OPEN_MS: i64 = 1_800_000_000_000;

fn sale(opened: bool, available: u32, admit_per_minute: u32) -> Sale {
    Sale {
        rules: WaitingRoomRules {
            enabled: true,
            admit_per_minute,
            pass_ttl_seconds: 60,
        },
        opened,
        published: true,
        available,
        sold_out: opened && available == 0,
        sale_start_ms: OPEN_MS,
    }
}

/// Shows readers what was decided, as the actor does once it is durable.
fn commit(room: &mut WaitingRoom) {
    if let Some(v) = room.visibility() {
        v.show();
    }
}

fn ranks(room: &WaitingRoom, users: impl IntoIterator<Item = UserId>) -> Vec<u32> {
    users
        .into_iter()
        .map(|u| room.board.spot(u).unwrap().rank.unwrap())
        .collect()
}

#[test]
fn early_arrivals_are_drawn_at_the_opening_and_later_ones_queue_behind_in_order() {
    let mut room = WaitingRoom::default();
    let before = sale(false, 1_000, 60);
    // The actor advances the line before every message, joins included.
    assert!(room.advance(OPEN_MS - 2_000, &before).is_empty());
    for user in 0..100 {
        let (view, change) = room.join(user, OPEN_MS - 1_000 + user, &before).unwrap();
        assert!(change.is_some());
        assert_eq!((view.position, view.draw_at_ms), (None, Some(OPEN_MS)));
    }
    assert!(
        room.advance(OPEN_MS - 1, &before).is_empty(),
        "no draw before the opening"
    );
    let changes = room.advance(OPEN_MS, &sale(true, 1_000, 60));
    let QueueChange::Ranked {
        user_ids,
        first_rank,
    } = &changes[0]
    else {
        panic!("the draw comes first: {changes:?}");
    };
    assert_eq!((user_ids.len(), *first_rank), (100, 0));
    let mut drawn = ranks(&room, 0..100);
    assert_ne!(
        drawn,
        (0..100).collect::<Vec<u32>>(),
        "shuffled (1 chance in 100!)"
    );
    drawn.sort_unstable();
    assert_eq!(drawn, (0..100).collect::<Vec<u32>>(), "a permutation");
    for user in 100..150 {
        room.join(user, OPEN_MS + user, &sale(true, 1_000, 60))
            .unwrap();
    }
    assert_eq!(ranks(&room, 100..150), (100..150).collect::<Vec<u32>>());
    let (again, change) = room
        .join(7, OPEN_MS + 5_000, &sale(true, 1_000, 60))
        .unwrap();
    assert!(change.is_none(), "joining again changes nothing");
    assert_eq!(again.joined_at_ms, OPEN_MS - 993);
}

#[test]
fn admissions_follow_the_pace_over_a_minute() {
    let mut room = WaitingRoom::default();
    let open = sale(true, 100_000, 600);
    room.advance(OPEN_MS, &open);
    for user in 0..2_000 {
        room.join(user, OPEN_MS, &open).unwrap();
    }
    // The actor wakes every tick; an irregular tick must not change the pace.
    let mut now = OPEN_MS;
    while now < OPEN_MS + 60_000 {
        now += if now % 3 == 0 { 100 } else { 137 };
        let now = now.min(OPEN_MS + 60_000);
        room.advance(now, &open);
    }
    commit(&mut room);
    assert!(
        (599..=600).contains(&room.admitted()),
        "{}",
        room.admitted()
    );
    let first = room.board.view(room.order[0], now).unwrap();
    assert_eq!(first.status, QueueStatus::Admitted);
    let next = room.board.view(room.order[room.admitted()], now).unwrap();
    assert_eq!(
        (next.status, next.position),
        (QueueStatus::Waiting, Some(1))
    );
}

#[test]
fn nobody_is_let_in_while_nothing_is_left_and_never_more_than_the_tickets_left() {
    let mut room = WaitingRoom::default();
    room.advance(OPEN_MS, &sale(true, 0, 6_000));
    for user in 0..50 {
        room.join(user, OPEN_MS, &sale(true, 0, 6_000)).unwrap();
    }
    room.advance(OPEN_MS + 10_000, &sale(true, 0, 6_000));
    assert_eq!(room.admitted(), 0, "sold out: nobody let in");
    // 3 tickets come back: at most 3 unused passes at once, however much pace is owed.
    room.advance(OPEN_MS + 20_000, &sale(true, 3, 6_000));
    assert_eq!(room.admitted(), 3);
    room.advance(OPEN_MS + 30_000, &sale(true, 3, 6_000));
    assert_eq!(room.admitted(), 3, "the three passes are still unused");
    // One pass is used (its hold took a ticket): one more place.
    let used = room.order[0];
    assert_eq!(room.check_pass(used, OPEN_MS + 30_000), Ok(true));
    room.use_pass(used, OPEN_MS + 30_000, 1);
    assert_eq!(room.check_pass(used, OPEN_MS + 30_000), Ok(false));
    room.advance(OPEN_MS + 30_100, &sale(true, 3, 6_000));
    assert_eq!(room.admitted(), 4);
}

#[test]
fn a_pass_runs_out_and_an_unused_one_gives_its_place_to_the_next() {
    let mut room = WaitingRoom::default();
    let open = sale(true, 100, 1);
    room.advance(OPEN_MS, &open);
    for user in 0..10 {
        room.join(user, OPEN_MS, &open).unwrap();
    }
    room.advance(OPEN_MS + 60_000, &open);
    assert_eq!(room.admitted(), 1, "one a minute");
    let first = room.order[0];
    assert_eq!(room.check_pass(first, OPEN_MS + 60_000), Ok(true));
    assert_eq!(
        room.check_pass(room.order[1], OPEN_MS + 60_000),
        Err(Refusal::QueuePassRequired)
    );
    assert_eq!(
        room.check_pass(99, OPEN_MS + 60_000),
        Err(Refusal::QueuePassRequired)
    );
    // The pass (60 s) runs out unused: the next buyer is let in at once, ahead of the pace.
    room.advance(OPEN_MS + 120_000, &open);
    commit(&mut room);
    assert_eq!(
        room.check_pass(first, OPEN_MS + 120_000),
        Err(Refusal::QueuePassExpired)
    );
    assert_eq!(
        room.board.view(first, OPEN_MS + 120_000).unwrap().status,
        QueueStatus::Expired
    );
    assert_eq!(
        room.admitted(),
        3,
        "one for the minute, one for the unused pass"
    );
}

#[test]
fn a_restored_waiting_room_keeps_every_place_and_pass() {
    let mut room = WaitingRoom::default();
    let mut rows = Vec::new();
    for user in 0..30 {
        if let (_, Some(QueueChange::Joined(row))) = room
            .join(user, OPEN_MS - 100 + user, &sale(false, 100, 600))
            .unwrap()
        {
            rows.push(row);
        }
    }
    room.advance(OPEN_MS, &sale(true, 100, 600));
    let mut admitted = Vec::new();
    for change in room.advance(OPEN_MS + 1_000, &sale(true, 100, 600)) {
        if let QueueChange::Admitted {
            to_rank,
            at_ms,
            pass_expires_at_ms,
            ..
        } = change
        {
            admitted.push((to_rank, at_ms, pass_expires_at_ms));
        }
    }
    let (to_rank, at_ms, expires_ms) = admitted[0];
    room.use_pass(room.order[0], OPEN_MS + 1_000, 1);
    let entries: Vec<RestoredEntry> = rows
        .iter()
        .map(|row| {
            let spot = room.board.spot(row.user_id).unwrap();
            let admitted = spot.rank.unwrap() < to_rank;
            RestoredEntry {
                user_id: row.user_id,
                arrival_seq: row.arrival_seq,
                early: row.early,
                rank: spot.rank,
                joined_at_ms: row.joined_at_ms,
                admitted_at_ms: admitted.then_some(at_ms),
                pass_expires_at_ms: admitted.then_some(expires_ms),
                pass_used: spot.pass_used,
            }
        })
        .collect();
    let restored = WaitingRoom::restore(entries, OPEN_MS + 1_000).unwrap();
    for user in 0..30 {
        assert_eq!(
            restored.board.spot(user),
            room.board.spot(user),
            "user {user}"
        );
    }
    assert_eq!(restored.admitted(), room.admitted());
    assert_eq!(restored.unused_passes, room.unused_passes);
    assert_eq!(restored.next_arrival, 30);
}

/// Once buyers let in have taken several tickets each, passes outstanding count for that
/// many: the last tickets are not promised to more buyers than they can serve — and the
/// last one still gets a buyer.
#[test]
fn passes_outstanding_count_for_the_tickets_buyers_take() {
    let mut room = WaitingRoom::default();
    assert_eq!(
        room.passes_for(88),
        88,
        "one ticket a pass before anyone bought"
    );
    room.passes_used = 4;
    room.first_hold_tickets = 12;
    assert_eq!(
        room.passes_for(88),
        30,
        "88 tickets serve 30 buyers at 3 each (rounded up)"
    );
    assert_eq!(room.passes_for(1), 1, "the last ticket still gets a buyer");
    assert_eq!(room.passes_for(0), 0);

    let open = |available| sale(true, available, 600_000);
    let mut room = WaitingRoom::default();
    room.advance(OPEN_MS, &open(10));
    for user in 0..20 {
        room.join(user, OPEN_MS, &open(10)).unwrap();
    }
    room.advance(OPEN_MS + 1_000, &open(10));
    assert_eq!(
        room.admitted(),
        10,
        "one ticket a pass before anyone bought"
    );
    let (first, second) = (room.order[0], room.order[1]);
    room.use_pass(first, OPEN_MS + 1_000, 2);
    room.use_pass(second, OPEN_MS + 1_000, 2);
    // 6 tickets left and 8 passes unused; at 2 tickets a buyer, 6 serve 3: nobody more.
    room.advance(OPEN_MS + 2_000, &open(6));
    assert_eq!(room.admitted(), 10);
    // The 8 unused passes run out (60 s): their places go to 3 buyers, not 8.
    room.advance(OPEN_MS + 62_000, &open(6));
    assert_eq!(room.admitted(), 13);
}
