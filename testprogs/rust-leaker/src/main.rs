//! `rust-leaker SECONDS [KIB_PER_SEC] [std]`: every 10 ms `leak_vec_forever` allocates a `Vec`,
//! touches each of its pages and forgets it (default 2048 KiB/s); `churn` allocates and drops
//! small vectors. With `std`, the leak is `remember_forever` instead: a filled `vec![..; n]`
//! (allocated by the C library's malloc and filled by its memset, as std does) kept in a global
//! list that is never pruned. Prints `{"pid":N,"ready":true}`, runs SECONDS, exits 0.
use std::{
    hint::black_box,
    sync::Mutex,
    thread::sleep,
    time::{Duration, Instant},
};

/// Everything `remember_forever` keeps.
static REMEMBERED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

const PAGE: usize = 4096;

/// Touch every page in place (the page faults land in the caller, which has a frame).
#[inline(always)]
fn touch(p: *mut u8, n: usize) {
    for off in (0..n).step_by(PAGE) {
        // SAFETY: within the allocation.
        unsafe { p.add(off).write_volatile(1) };
    }
    // SAFETY: the last byte of the allocation.
    unsafe { p.add(n - 1).write_volatile(1) };
}

#[inline(never)]
fn leak_vec_forever(bytes: usize) {
    let mut v: Vec<u8> = Vec::with_capacity(bytes);
    touch(v.as_mut_ptr(), bytes);
    std::mem::forget(v);
}

#[inline(never)]
fn remember_forever(bytes: usize, round: usize) {
    let v = vec![(round % 251) as u8 + 1; bytes];
    REMEMBERED.lock().unwrap_or_else(|e| e.into_inner()).push(v);
}

#[inline(never)]
fn churn(round: usize) {
    let n = [24, 100, 512, 1000][round % 4];
    let mut v: Vec<u8> = Vec::with_capacity(n);
    touch(v.as_mut_ptr(), n);
    black_box(&v);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let kib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2048);
    let chunk = (kib * 1024 / 100).max(1);
    let via_std = args.get(3).is_some_and(|a| a == "std");
    println!("{{\"pid\":{},\"ready\":true}}", std::process::id());
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut round = 0;
    while Instant::now() < end {
        for _ in 0..8 {
            churn(round);
            round += 1;
        }
        if via_std {
            remember_forever(chunk, round);
        } else {
            leak_vec_forever(chunk);
        }
        sleep(Duration::from_millis(10));
    }
}
