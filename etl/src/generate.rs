//! Deterministic synthetic data in the canonical formats: coins with random-walk prices,
//! market caps consistent with a fixed supply, volumes that follow the caps, volume-based
//! rankings observed a few seconds before each snapshot, tickers on a few dozen
//! exchanges, and people trading those coins at market prices. Same seed, same bytes.

use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What to generate (also the `generate` subcommand's arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateOptions {
    /// Number of coins.
    #[arg(long)]
    pub coins: usize,
    /// Days of hourly (see --interval-minutes) snapshots, from 2024-01-01.
    #[arg(long)]
    pub days: u32,
    /// Number of people (each makes 0–12 trades).
    #[arg(long, default_value_t = 50)]
    pub people: usize,
    /// Seed: the same seed writes the same bytes.
    #[arg(long)]
    pub seed: u64,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Minutes between two price snapshots of a coin.
    #[arg(long, default_value_t = 60)]
    pub interval_minutes: u32,
    /// Sprinkle known bad rows (well under the reject budget).
    #[arg(long)]
    pub with_errors: bool,
}

const EXCHANGES: &[&str] = &[
    "binance",
    "coinbase",
    "kraken",
    "bitfinex",
    "bitstamp",
    "huobi",
    "okx",
    "kucoin",
    "gate",
    "bybit",
    "gemini",
    "bittrex",
    "poloniex",
    "bitget",
    "mexc",
    "crypto_com",
    "upbit",
    "bithumb",
    "bitflyer",
    "coincheck",
    "lbank",
    "hitbtc",
    "probit",
    "bitmart",
    "whitebit",
    "ascendex",
    "phemex",
    "digifinex",
    "coinex",
    "bingx",
    "uniswap",
    "pancakeswap",
    "sushiswap",
    "curve",
];

const REAL: &[(&str, &str, &str, f64)] = &[
    ("bitcoin", "BTC", "Bitcoin", 42_000.0),
    ("ethereum", "ETH", "Ethereum", 2_300.0),
    ("tether", "USDT", "Tether", 1.0),
    ("binancecoin", "BNB", "BNB", 310.0),
    ("solana", "SOL", "Solana", 100.0),
    ("ripple", "XRP", "XRP", 0.6),
    ("cardano", "ADA", "Cardano", 0.5),
    ("dogecoin", "DOGE", "Dogecoin", 0.08),
];

const SYLLABLES: &[&str] = &[
    "zen", "tor", "lum", "ka", "vex", "ora", "nix", "qua", "ri", "sol", "tra", "mo", "dex", "fi",
    "glo", "ber", "xy", "pha", "neo", "chain", "bit", "coin", "ly", "ra", "vo", "sta", "mint",
    "flux", "arc", "io",
];

const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Barbara",
    "Ken",
    "Margaret",
    "Dennis",
    "Radia",
    "Edsger",
    "Frances",
    "John",
    "Katherine",
    "Tim",
    "Hedy",
    "Guido",
    "Sophie",
    "Bjarne",
    "Anita",
    "Donald",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Liskov",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Dijkstra",
    "Allen",
    "McCarthy",
    "Johnson",
    "Berners-Lee",
    "Lamarr",
    "van Rossum",
    "Wilson",
    "Stroustrup",
    "Borg",
    "Knuth",
];

struct CoinSpec {
    id: String,
    symbol: String,
    name: String,
    price: f64,
    supply: f64,
    volatility: f64,
    turnover: f64,
}

fn coin_specs(rng: &mut ChaCha8Rng, n: usize) -> Vec<CoinSpec> {
    let mut specs = Vec::with_capacity(n);
    let mut used = std::collections::HashSet::new();
    for k in 0..n {
        let (id, symbol, name, price) = if let Some(&(id, symbol, name, price)) = REAL.get(k) {
            (id.to_string(), symbol.to_string(), name.to_string(), price)
        } else {
            let parts = rng.random_range(2..=3);
            let mut name = String::new();
            for _ in 0..parts {
                name.push_str(SYLLABLES[rng.random_range(0..SYLLABLES.len())]);
            }
            let mut id = name.clone();
            if !used.insert(id.clone()) {
                id = format!("{name}-{k}");
                used.insert(id.clone());
            }
            let mut chars = name.chars();
            let title = chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default();
            let symbol: String = name
                .chars()
                .filter(|c| c.is_ascii_alphabetic())
                .take(4)
                .collect::<String>()
                .to_uppercase();
            // log-uniform starting price between 0.0001 and 500
            let price = 10f64.powf(rng.random_range(-4.0..2.7));
            (id, symbol, title, price)
        };
        used.insert(id.clone());
        let supply = 10f64.powf(rng.random_range(6.0..11.0));
        let volatility = if symbol == "USDT" {
            0.0005
        } else {
            rng.random_range(0.002..0.02)
        };
        specs.push(CoinSpec {
            id,
            symbol,
            name,
            price,
            supply,
            volatility,
            turnover: rng.random_range(0.01..0.25),
        });
    }
    specs
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn iso(ts: DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

fn create(dir: &Path, name: &str) -> std::io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(
        1 << 20,
        File::create(dir.join(name))?,
    ))
}

/// Writes coins.csv, markets.csv, rankings.csv, tickers.csv, people.csv, trades.csv.
/// Returns the number of rows written per file.
pub fn generate(opts: &GenerateOptions) -> std::io::Result<Vec<(String, u64)>> {
    std::fs::create_dir_all(&opts.out)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut specs = coin_specs(&mut rng, opts.coins.max(1));
    let mut counts = Vec::new();

    let mut w = create(&opts.out, "coins.csv")?;
    writeln!(w, "id,symbol,name,cmc_id")?;
    for (k, c) in specs.iter().enumerate() {
        writeln!(w, "{},{},{},{}", c.id, c.symbol, c.name, k + 1)?;
    }
    w.flush()?;
    counts.push(("coins.csv".to_string(), specs.len() as u64));

    let start = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let step = ChronoDuration::minutes(i64::from(opts.interval_minutes.max(1)));
    let steps =
        (i64::from(opts.days) * 24 * 60 / i64::from(opts.interval_minutes.max(1))).max(1) as usize;
    let mut markets = create(&opts.out, "markets.csv")?;
    let mut rankings = create(&opts.out, "rankings.csv")?;
    writeln!(markets, "coin_id,timestamp,price,market_cap,volume_24h")?;
    writeln!(rankings, "coin_id,timestamp,rank,volume_24h")?;
    let (mut n_markets, mut n_rankings) = (0u64, 0u64);
    let mut last_prices: Vec<Vec<f64>> = vec![Vec::with_capacity(steps); specs.len()];
    let mut volumes = vec![0.0f64; specs.len()];
    let mut order: Vec<usize> = (0..specs.len()).collect();
    let mut ranks = vec![0usize; specs.len()];
    // Rows are written coin by coin (the key order), so compute each step's ranks first.
    let mut rank_table: Vec<Vec<u32>> = vec![Vec::with_capacity(steps); specs.len()];
    let mut volume_table: Vec<Vec<f64>> = vec![Vec::with_capacity(steps); specs.len()];
    for _ in 0..steps {
        for (k, c) in specs.iter_mut().enumerate() {
            c.price *= (c.volatility * normal(&mut rng)).exp();
            let cap = c.price * c.supply;
            volumes[k] = cap * c.turnover * (0.5 + rng.random::<f64>());
            last_prices[k].push(c.price);
            volume_table[k].push(volumes[k]);
        }
        order.sort_by(|&a, &b| volumes[b].total_cmp(&volumes[a]).then(a.cmp(&b)));
        for (position, &k) in order.iter().enumerate() {
            ranks[k] = position + 1;
        }
        for (k, r) in ranks.iter().enumerate() {
            rank_table[k].push(*r as u32);
        }
    }
    for (k, c) in specs.iter().enumerate() {
        for s in 0..steps {
            let ts = start + step * s as i32;
            let price = round_sig(last_prices[k][s], 10);
            let cap = round_sig(price * c.supply, 12);
            let volume = round_sig(volume_table[k][s], 10);
            if opts.with_errors && rng.random_range(0..1000) == 0 {
                write_bad_market(&mut markets, &mut rng, &c.id, ts)?;
            } else {
                writeln!(markets, "{},{},{},{},{}", c.id, iso(ts), price, cap, volume)?;
            }
            n_markets += 1;
            let observed = ts - ChronoDuration::seconds(rng.random_range(1..=30));
            writeln!(
                rankings,
                "{},{},{},{}",
                c.id,
                iso(observed),
                rank_table[k][s],
                volume
            )?;
            n_rankings += 1;
        }
    }
    markets.flush()?;
    rankings.flush()?;
    counts.push(("markets.csv".to_string(), n_markets));
    counts.push(("rankings.csv".to_string(), n_rankings));

    let mut w = create(&opts.out, "tickers.csv")?;
    writeln!(w, "coin_id,exchange,base,target")?;
    let mut n = 0u64;
    for c in &specs {
        let listed = rng.random_range(1..=8.min(EXCHANGES.len()));
        let mut chosen: Vec<&str> = Vec::new();
        while chosen.len() < listed {
            let e = EXCHANGES[rng.random_range(0..EXCHANGES.len())];
            if !chosen.contains(&e) {
                chosen.push(e);
            }
        }
        for e in chosen {
            let target = if rng.random_bool(0.5) { "USDT" } else { "USD" };
            writeln!(w, "{},{},{},{}", c.id, e, c.symbol, target)?;
            n += 1;
        }
    }
    w.flush()?;
    counts.push(("tickers.csv".to_string(), n));

    let mut w = create(&opts.out, "people.csv")?;
    writeln!(w, "person_id,first_name,last_name,email,date_added")?;
    for p in 1..=opts.people {
        let first = FIRST[rng.random_range(0..FIRST.len())];
        let last = LAST[rng.random_range(0..LAST.len())];
        let email = format!(
            "{}.{}{}@example.com",
            first.to_lowercase(),
            last.to_lowercase().replace([' ', '-'], ""),
            p
        );
        let added = start - ChronoDuration::days(rng.random_range(1..700));
        // Names with commas or quotes exercise CSV quoting.
        let last_field = if last.contains(' ') {
            format!("\"{last}\"")
        } else {
            last.to_string()
        };
        writeln!(
            w,
            "{p},{first},{last_field},{email},{}",
            added.format("%Y-%m-%d")
        )?;
    }
    w.flush()?;
    counts.push(("people.csv".to_string(), opts.people as u64));

    let mut w = create(&opts.out, "trades.csv")?;
    writeln!(w, "person_id,timestamp,coin_id,side,quantity,price")?;
    let mut n = 0u64;
    for p in 1..=opts.people {
        let trades = rng.random_range(0..=12);
        for _ in 0..trades {
            let k = rng.random_range(0..specs.len().min(50));
            let s = rng.random_range(0..steps);
            let ts = start + step * s as i32 + ChronoDuration::seconds(rng.random_range(0..60));
            let side = if rng.random_bool(0.7) { "buy" } else { "sell" };
            let price = round_sig(last_prices[k][s] * (1.0 + 0.002 * normal(&mut rng)), 10);
            let quantity = round_sig(
                rng.random_range(10.0..5_000.0) / last_prices[k][s].max(1e-9),
                6,
            );
            if opts.with_errors && rng.random_range(0..200) == 0 {
                writeln!(
                    w,
                    "{p},{},{},{side},-{quantity},{price}",
                    iso(ts),
                    specs[k].id
                )?;
            } else {
                writeln!(
                    w,
                    "{p},{},{},{side},{quantity},{price}",
                    iso(ts),
                    specs[k].id
                )?;
            }
            n += 1;
        }
    }
    w.flush()?;
    counts.push(("trades.csv".to_string(), n));
    Ok(counts)
}

fn write_bad_market(
    w: &mut impl Write,
    rng: &mut ChaCha8Rng,
    coin: &str,
    ts: DateTime<Utc>,
) -> std::io::Result<()> {
    match rng.random_range(0..5) {
        0 => writeln!(w, "{coin},{},-1.5,1000,10", iso(ts)),
        1 => writeln!(w, "{coin},not-a-date,1.5,1000,10"),
        2 => writeln!(w, "no-such-coin,{},1.5,1000,10", iso(ts)),
        3 => writeln!(w, "{coin},{},1.5,1000", iso(ts)),
        _ => writeln!(w, "{coin},{},1.5,-1000,10", iso(ts)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(seed: u64, out: PathBuf) -> GenerateOptions {
        GenerateOptions {
            coins: 5,
            days: 2,
            people: 10,
            seed,
            out,
            interval_minutes: 60,
            with_errors: false,
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        let counts = generate(&opts(7, a.clone())).expect("generate");
        generate(&opts(7, b.clone())).expect("generate");
        generate(&opts(8, c.clone())).expect("generate");
        for (name, _) in &counts {
            let read = |d: &Path| std::fs::read(d.join(name)).expect("read");
            assert_eq!(read(&a), read(&b), "{name}");
        }
        assert_ne!(
            std::fs::read(a.join("markets.csv")).ok(),
            std::fs::read(c.join("markets.csv")).ok()
        );
        assert_eq!(counts[1], ("markets.csv".to_string(), 5 * 48));
    }
}
