use super::*;
use std::time::Instant;

#[test]
fn a_grandchild_wakes_when_the_root_is_cancelled() {
    let root = Cancel::new();
    let grandchild = root.child().child();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let start = Instant::now();
            grandchild.wait();
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        root.cancel_with(CancelReason::Interrupted);
        assert!(waiter.join().unwrap() < Duration::from_secs(10));
    });
    assert_eq!(grandchild.reason(), Some(CancelReason::Interrupted));
    assert!(grandchild.done().recv().is_err());
}

#[test]
fn a_child_of_a_cancelled_token_is_born_cancelled_and_woken() {
    let root = Cancel::new();
    root.cancel();
    let child = root.child();
    assert!(child.is_cancelled());
    assert!(child.wait_timeout(Duration::from_secs(10)));
}

#[test]
fn cancelling_a_child_leaves_its_parent_and_siblings_alone() {
    let root = Cancel::new();
    let (a, b) = (root.child(), root.child());
    a.cancel_with(CancelReason::Failed);
    assert!(!root.is_cancelled() && !b.is_cancelled());
    assert!(!b.wait_timeout(Duration::from_millis(5)));
    root.cancel();
    assert_eq!(a.reason(), Some(CancelReason::Failed));
    assert_eq!(b.reason(), Some(CancelReason::Cancelled));
}

#[test]
fn the_fd_polls_readable_once_cancelled_and_not_before() {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let ready = |cx: &Cancel| {
        let fd = cx.fd().unwrap();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let now = Timespec::try_from(Duration::ZERO).unwrap();
        poll(&mut fds, Some(&now)).unwrap() > 0
    };
    let parent = Cancel::new();
    let child = parent.child();
    assert!(!ready(&child));
    parent.cancel();
    assert!(ready(&child));
    let late = Cancel::new();
    late.cancel();
    assert!(ready(&late), "made after the cancel");
}

#[test]
fn dropped_children_are_not_kept() {
    let root = Cancel::new();
    for _ in 0..1000 {
        drop(root.child());
    }
    let _live = root.child();
    assert!(lock(&root.0.children).len() <= 2);
}

#[test]
fn async_waiters_wake_on_a_parents_cancel_from_another_thread() {
    let root = Cancel::new();
    let child = root.child();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            root.cancel();
        });
        rt.block_on(child.cancelled());
    });
    assert!(child.is_cancelled());
}
