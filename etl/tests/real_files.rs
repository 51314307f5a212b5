//! Real files as users have them (issue 12): every row of every file is accounted for
//! (blank rows, set-aside rows, conflicting duplicates), and set-aside files retried
//! unchanged do not pile up rejects. Each test writes its own small files; the fixture
//! checks the row identity after every run.

mod common;
use common::*;

const MARKETS_HEADER: &str = "coin_id,timestamp,price,market_cap,volume_24h\n";

/// `n` valid hourly bitcoin rows from 2021-01-01.
fn bitcoin_rows(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "bitcoin,2021-01-{:02}T{:02}:00:00Z,{}.5,1000,10\n",
                1 + i / 24,
                i % 24,
                30000 + i
            )
        })
        .collect()
}

#[test]
fn blank_rows_are_counted_apart_and_not_held_against_the_budget() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Two rows of data, then spreadsheet padding: 8 wholly blank rows (one of spaces,
    // one shorter than the header), which used to set the file aside as 80 % rejects.
    let padding = ",,,,\n".repeat(6) + " , ,  , ,\n,,\n";
    fx.write(
        "padded.csv",
        format!("{MARKETS_HEADER}{}{padding}", bitcoin_rows(2)),
    );
    // A row with some cells filled is data: validated as before.
    fx.write(
        "partial.csv",
        format!(
            "{MARKETS_HEADER}{}ethereum,,,,\n",
            bitcoin_rows(30).replace("2021-01", "2021-03")
        ),
    );
    let report = fx.run();
    let padded = file(&report, "padded.csv");
    assert_eq!(padded.status, "loaded");
    assert_eq!(
        (padded.read, padded.loaded, padded.blank, padded.rejected),
        (10, 2, 8, 0)
    );
    assert!(fx.rejects("padded.csv").is_empty());
    let partial = file(&report, "partial.csv");
    assert_eq!(
        (
            partial.read,
            partial.loaded,
            partial.blank,
            partial.rejected
        ),
        (31, 30, 0, 1)
    );
    let rejects = fx.rejects("partial.csv");
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].0, 32);
    assert_eq!(rejects[0].2, "missing required value");
    assert_eq!(
        fx.count("SELECT blank FROM etl_files WHERE path = 'padded.csv'"),
        8
    );
}

#[test]
fn the_reject_budget_counts_rows_of_data_only() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // 1 reject among 10 rows of data is 10 %, over the 5 % budget, however many blank
    // rows pad the file.
    let bad = "bitcoin,2021-06-01,-1,1,1\n";
    fx.write(
        "markets.csv",
        format!(
            "{MARKETS_HEADER}{}{bad}{}",
            bitcoin_rows(9),
            ",,,,\n".repeat(100)
        ),
    );
    let report = fx.run();
    let f = file(&report, "markets.csv");
    assert_eq!(f.status, "set_aside");
    assert_eq!(
        (f.read, f.rejected, f.blank, f.set_aside, f.loaded),
        (110, 1, 100, 9, 0)
    );
    assert!(f
        .reason
        .as_deref()
        .unwrap_or("")
        .starts_with("1 of 10 rows rejected (10.0%)"));
}

#[test]
fn a_set_aside_file_counts_its_valid_rows_as_set_aside_and_none_as_zeroed() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Three valid rows (one with a market cap of 0), two rejects: over the budget.
    fx.write(
        "markets.csv",
        format!(
            "{MARKETS_HEADER}bitcoin,2021-01-01,1,0,5\nbitcoin,2021-01-02,2,7,5\nbitcoin,2021-01-03,3,7,5\n\
             bitcoin,2021-01-04,-1,7,5\nnocoin,2021-01-05,1,7,5\n"
        ),
    );
    let report = fx.run();
    let f = file(&report, "markets.csv");
    assert_eq!(f.status, "set_aside");
    assert_eq!(
        (f.read, f.loaded, f.rejected, f.set_aside, f.zeroed),
        (5, 0, 2, 3, 0)
    );
    assert_eq!(report.totals.set_aside, 3);
    assert_eq!(fx.count("SELECT count(*) FROM market"), 0);
    assert_eq!(
        fx.count("SELECT set_aside FROM etl_files WHERE path = 'markets.csv'"),
        3
    );
}

#[test]
fn a_conflicting_duplicate_in_one_file_is_rejected_and_the_first_row_kept() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Line 2 and line 3 are identical (a duplicate); line 4 repeats their key with
    // another price (a conflict); the rest are distinct keys.
    fx.write(
        "markets.csv",
        format!(
            "{MARKETS_HEADER}ethereum,2021-01-01,100,7,5\nethereum,2021-01-01,100,7,5\n\
             ethereum,2021-01-01,200,7,5\n{}",
            bitcoin_rows(30)
        ),
    );
    let report = fx.run();
    let f = file(&report, "markets.csv");
    assert_eq!(f.status, "loaded");
    assert_eq!(
        (f.read, f.loaded, f.duplicate, f.updated, f.rejected),
        (33, 31, 1, 0, 1)
    );
    assert_eq!(
        fx.text("SELECT price_usd FROM market WHERE coin_id = 'ethereum'")
            .as_deref(),
        Some("100"),
        "the first row of the key is kept"
    );
    let rejects = fx.rejects("markets.csv");
    assert_eq!(
        rejects,
        vec![(
            4,
            None,
            "conflicting duplicate key (first at line 2)".to_string()
        )]
    );
    assert_eq!(
        fx.text("SELECT raw_line FROM etl_rejects WHERE line = 4")
            .as_deref(),
        Some("ethereum,2021-01-01,200,7,5")
    );
    // A later file still updates the stored row.
    fx.write(
        "later.csv",
        format!("{MARKETS_HEADER}ethereum,2021-01-01,300,7,5\n"),
    );
    let later = fx.run();
    assert_eq!(file(&later, "later.csv").updated, 1);
    assert_eq!(
        fx.text("SELECT price_usd FROM market WHERE coin_id = 'ethereum'")
            .as_deref(),
        Some("300")
    );
}

#[test]
fn conflicting_duplicates_count_against_the_budget() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Every key twice with two prices: half the rows conflict.
    let rows: String = (1..=10)
        .map(|d| {
            format!(
                "bitcoin,2021-01-{d:02},{d},7,5\nbitcoin,2021-01-{d:02},{},7,5\n",
                d + 100
            )
        })
        .collect();
    fx.write("markets.csv", format!("{MARKETS_HEADER}{rows}"));
    let report = fx.run();
    let f = file(&report, "markets.csv");
    assert_eq!(f.status, "set_aside");
    assert_eq!((f.read, f.loaded, f.rejected, f.set_aside), (20, 0, 10, 10));
    assert_eq!(
        fx.count("SELECT count(*) FROM market"),
        0,
        "nothing of it loads"
    );
    assert_eq!(fx.rejects("markets.csv").len(), 10);
}

#[test]
fn an_unchanged_set_aside_file_is_not_judged_again_until_its_coins_change() {
    let fx = Fixture::new();
    fx.write("coins.csv", COINS);
    // Half of the rows name a coin nobody knows yet.
    fx.write(
        "markets.csv",
        format!("{MARKETS_HEADER}bitcoin,2021-01-01,1,7,5\ndogecoin,2021-01-01,0.1,7,5\n"),
    );
    let first = fx.run();
    assert_eq!(file(&first, "markets.csv").status, "set_aside");
    assert_eq!(fx.rejects("markets.csv").len(), 1);

    let second = fx.run();
    let again = file(&second, "markets.csv");
    assert_eq!(again.status, "set_aside");
    assert_eq!((again.read, again.rejected, again.set_aside), (2, 1, 1));
    assert!(again
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("not read again"));
    assert_eq!(
        fx.count("SELECT count(*) FROM etl_rejects"),
        1,
        "a re-run adds no reject rows"
    );

    // --force judges it again; its reject is still kept once.
    let forced = fx.run_with(|o| o.force = vec![fx.path().join("markets.csv")]);
    assert!(!file(&forced, "markets.csv")
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("not read again"));
    assert_eq!(fx.count("SELECT count(*) FROM etl_rejects"), 1);

    // A coin list that knows dogecoin: the file is judged again and loads; the stale
    // reject goes, its row being loaded now.
    fx.write("more_coins.csv", "id,symbol,name\ndogecoin,DOGE,Dogecoin\n");
    let third = fx.run();
    let loaded = file(&third, "markets.csv");
    assert_eq!(loaded.status, "loaded");
    assert_eq!((loaded.loaded, loaded.rejected), (2, 0));
    assert_eq!(fx.count("SELECT count(*) FROM etl_rejects"), 0);
    assert_eq!(fx.count("SELECT count(*) FROM market"), 2);
}
