//! Review R7: the dial beside's "never the last place" under two cores at once.

use std::sync::{Arc, Barrier};

use super::UpstreamCap;

/// R7 finding (LOW): `UpstreamCap::spare_permit` reads `available_permits() < 2` and then
/// acquires, two steps with no lock between: two cores that both see two places free each
/// take one, and the last place goes to a dial beside that no request waits for (the
/// request that needed it then waits at the cap, see tests/review7_beside.rs). Two threads
/// ask at once on a cap with exactly two free places, many times over; should: never both
/// (a compare-and-swap on the count, or one lock around the check and the acquire).
#[test]
fn review7_two_cores_asking_at_once_never_both_take_a_spare_place() {
    let mut both = 0;
    for _ in 0..20_000 {
        let cap = Arc::new(UpstreamCap::new(2));
        let start = Arc::new(Barrier::new(2));
        let askers: Vec<_> = (0..2)
            .map(|_| {
                let (cap, start) = (Arc::clone(&cap), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    cap.spare_permit()
                })
            })
            .collect();
        let got: Vec<_> = askers
            .into_iter()
            .filter_map(|a| a.join().ok().flatten())
            .collect();
        if got.len() == 2 {
            both += 1;
        }
    }
    assert_eq!(
        both, 0,
        "in {both} of 20000 races both cores took a spare place: the last one went to a dial beside"
    );
}
