//! `--rate auto`: a pacer that finds the API's undocumented rate limit.
//!
//! In the manner of TCP congestion control and the AWS SDKs' adaptive retry mode: start low and
//! double the rate each second while every call succeeds and latency holds (slow start); at the
//! first congestion signal — a 429, or latency well above the best seen — cut to just under the
//! goodput of the last second (the successful answers in it: once a server's limit is reached,
//! that *is* the limit), then grow by 1% a second, cutting again at each signal. At most one cut
//! a second, so the several 429s of one overshoot count once. Never above `max`. Sends are
//! spaced `1/rate` apart with no burst, so no one-second window holds more than the rate.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::caller::MIN_RATE;

/// The cut at a congestion signal: this share of the last second's goodput.
const CUT_TO: f64 = 0.97;
/// Growth per second after the first signal.
const GROWTH: f64 = 0.01;
/// Latency over this many times the best seen (plus a margin) is congestion.
const LATENCY_FACTOR: f64 = 2.0;
const LATENCY_MARGIN: f64 = 0.05;
const SECOND: Duration = Duration::from_secs(1);

pub struct Adaptive {
    max: f64,
    state: Mutex<State>,
}

struct State {
    rate: f64,
    /// The next free send slot.
    next: Instant,
    slow_start: bool,
    window_start: Instant,
    window_sent: u64,
    window_congested: bool,
    last_cut: Option<Instant>,
    /// Successful answers of the last second, by arrival.
    goodput: VecDeque<Instant>,
    /// Smoothed latency and the best smoothed latency seen, in seconds.
    latency: Option<f64>,
    best_latency: Option<f64>,
    /// The rate, smoothed over the last seconds: what the run settled at.
    settled: f64,
    /// The goodput at the last cut: the best estimate of the limit.
    limit_estimate: Option<f64>,
    started: Instant,
}

impl Adaptive {
    pub fn new(start: f64, max: f64) -> Adaptive {
        let now = Instant::now();
        let start = start.clamp(MIN_RATE, max);
        Adaptive {
            max,
            state: Mutex::new(State {
                rate: start,
                next: now,
                slow_start: true,
                window_start: now,
                window_sent: 0,
                window_congested: false,
                last_cut: None,
                goodput: VecDeque::new(),
                latency: None,
                best_latency: None,
                settled: start,
                limit_estimate: None,
                started: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the next send slot (slots are `1/rate` apart; none is saved up while idle).
    pub async fn until_ready(&self) {
        let slot = {
            let mut s = self.lock();
            let now = Instant::now();
            let slot = s.next.max(now);
            s.next = slot + Duration::from_secs_f64(1.0 / s.rate);
            s.window_sent += 1;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }

    /// An answer came: `throttled` for a 429, with how long the call took.
    pub fn answered(&self, latency: Duration, throttled: bool) {
        let now = Instant::now();
        let mut s = self.lock();
        while s.goodput.front().is_some_and(|t| now.duration_since(*t) >= SECOND) {
            s.goodput.pop_front();
        }
        let congested = if throttled {
            true
        } else {
            s.goodput.push_back(now);
            let l = latency.as_secs_f64();
            let smooth = s.latency.map_or(l, |e| 0.9 * e + 0.1 * l);
            s.latency = Some(smooth);
            let best = s.best_latency.map_or(smooth, |b| b.min(smooth));
            s.best_latency = Some(best);
            smooth > LATENCY_FACTOR * best + LATENCY_MARGIN
        };
        if congested {
            s.window_congested = true;
            if s.last_cut.is_none_or(|t| now.duration_since(t) >= SECOND) {
                let goodput = s.goodput.len() as f64;
                // The goodput tells the limit once a second of answers is in; before that, half
                // the rate.
                let full_second = now.duration_since(s.started) >= SECOND;
                let target = if full_second && goodput > 0.0 {
                    s.limit_estimate = Some(goodput);
                    goodput * CUT_TO
                } else {
                    s.rate * 0.5
                };
                s.rate = target.min(s.rate * CUT_TO).clamp(MIN_RATE, self.max);
                s.slow_start = false;
                s.last_cut = Some(now);
                tracing::debug!(rate = s.rate, goodput, throttled, "rate auto: congestion, rate cut");
            }
        }
        let elapsed = now.duration_since(s.window_start);
        if elapsed >= SECOND {
            // Grow only while the calls keep up with the rate (a run held back by its
            // concurrency or its dependencies learns nothing about the limit).
            let busy = s.window_sent as f64 >= 0.8 * s.rate * elapsed.as_secs_f64();
            if !s.window_congested && busy {
                let grown = if s.slow_start { s.rate * 2.0 } else { s.rate + (s.rate * GROWTH).max(1.0) };
                s.rate = grown.min(self.max);
            }
            s.settled = if s.slow_start { s.rate } else { 0.8 * s.settled + 0.2 * s.rate };
            s.window_start = now;
            s.window_sent = 0;
            s.window_congested = false;
        }
    }

    /// The rate now.
    #[cfg(test)]
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// The rate the run settled at: smoothed over the last seconds, and never above the limit
    /// the last cut measured.
    pub fn settled(&self) -> f64 {
        let s = self.lock();
        let settled = s.limit_estimate.map_or(s.settled, |l| s.settled.min(l));
        (settled * 10.0).round() / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_doubles_and_a_429_cuts_to_the_goodput() {
        let a = Adaptive::new(10.0, 1000.0);
        {
            let mut s = a.lock();
            s.window_start -= SECOND;
            s.started -= SECOND;
            s.window_sent = 10;
        }
        a.answered(Duration::from_millis(5), false);
        assert_eq!(a.rate(), 20.0, "doubled after a busy second without congestion");
        {
            let mut s = a.lock();
            let now = Instant::now();
            s.goodput = (0..300).map(|_| now).collect();
        }
        a.answered(Duration::from_millis(5), true);
        assert!((a.rate() - 19.4).abs() < 1e-9, "never above the rate's own cut: {}", a.rate());
        let b = Adaptive::new(500.0, 1000.0);
        {
            let mut s = b.lock();
            let now = Instant::now();
            s.goodput = (0..300).map(|_| now).collect();
            s.slow_start = false;
            s.started -= SECOND;
        }
        b.answered(Duration::from_millis(5), true);
        assert!((b.rate() - 291.0).abs() < 1e-9, "cut to 97% of the goodput: {}", b.rate());
        // A second 429 within the second does not cut again.
        b.answered(Duration::from_millis(5), true);
        assert!((b.rate() - 291.0).abs() < 1e-9);
    }

    #[test]
    fn the_rate_never_exceeds_the_maximum() {
        let a = Adaptive::new(800.0, 1000.0);
        {
            let mut s = a.lock();
            s.window_start -= SECOND;
            s.window_sent = 800;
        }
        a.answered(Duration::from_millis(5), false);
        assert_eq!(a.rate(), 1000.0);
    }
}
