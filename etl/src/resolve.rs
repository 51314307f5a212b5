//! Coin identity (SPEC §2): a coin is resolved by id, then through `coin_aliases`, then
//! by symbol when exactly one known coin has it, then by name (both case-insensitive).
//! Listings may create coins, or record a CMC slug as an alias of a coin with the same
//! symbol and name instead of creating a twin. A price history whose rows name a coin by
//! symbol and name that nothing known matches infers it ([`CoinIndex::infer`]). Ids that
//! providers spell differently resolve through a shipped alias table too. The index
//! holds the coins already in the database plus those of the current run; a file that is
//! set aside rolls its additions back.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KnownCoin {
    pub(crate) symbol: String,
    pub(crate) name: String,
}

/// The outcome of resolving a coin reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution {
    Found(String),
    Unknown,
    AmbiguousSymbol,
}

/// What a listings row did to the coin dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListingCoin {
    Existing(String),
    /// The slug was recorded as an alias of this coin.
    Aliased {
        external_id: String,
        coin_id: String,
    },
    Created(NewCoin),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewCoin {
    pub(crate) id: String,
    pub(crate) symbol: String,
    pub(crate) name: String,
    pub(crate) cmc_id: Option<i64>,
    /// Made up from a history row's symbol and name (`coins.origin = 'inferred'`), not
    /// taken from a coin list.
    pub(crate) inferred: bool,
}

/// Ids that providers give the same coin (CoinGecko's, CoinMarketCap's slug, …): an id
/// of a group resolves to whichever member of the group is known. They ship with the
/// code because no coin list carries them; `coin_aliases` holds the rest.
const SHIPPED_ALIASES: &[&[&str]] = &[
    &["binancecoin", "binance-coin", "bnb"],
    &["bitcoin-cash-sv", "bitcoin-sv"],
    &["ripple", "xrp"],
    &["avalanche-2", "avalanche"],
    &["matic-network", "polygon"],
    &["crypto-com-chain", "cronos"],
    &["dai", "multi-collateral-dai"],
    &["elrond-erd-2", "multiversx-egld", "elrond-egld"],
    &["theta-token", "theta-network"],
    &["kucoin-shares", "kucoin-token"],
    &["leo-token", "unus-sed-leo"],
    &["near", "near-protocol"],
    &["hedera-hashgraph", "hedera"],
    &["iota", "miota"],
    &["huobi-token", "htx-dao"],
];

/// A coin id made from a name: lower case, runs of other characters as one `-`.
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// The alias source recorded for slugs that listings map onto known coins.
pub(crate) const LISTINGS_ALIAS_SOURCE: &str = "listings";

#[derive(Debug, Clone, Default)]
pub(crate) struct CoinIndex {
    coins: HashMap<String, KnownCoin>,
    aliases: HashMap<String, String>,
    by_symbol: HashMap<String, Vec<String>>,
    by_name: HashMap<String, Vec<String>>,
    /// Coins and aliases added by the file being processed, to insert or roll back.
    pending_coins: Vec<NewCoin>,
    pending_aliases: Vec<(String, String)>,
}

impl CoinIndex {
    pub(crate) fn insert_known(&mut self, id: &str, symbol: &str, name: &str) {
        if let Some(previous) = self.coins.get(id).cloned() {
            remove_from(&mut self.by_symbol, &previous.symbol.to_lowercase(), id);
            remove_from(&mut self.by_name, &previous.name.to_lowercase(), id);
        }
        self.coins.insert(
            id.to_string(),
            KnownCoin {
                symbol: symbol.to_string(),
                name: name.to_string(),
            },
        );
        push_unique(&mut self.by_symbol, symbol.to_lowercase(), id);
        push_unique(&mut self.by_name, name.to_lowercase(), id);
    }

    pub(crate) fn insert_alias(&mut self, external_id: &str, coin_id: &str) {
        self.aliases
            .entry(external_id.to_lowercase())
            .or_insert_with(|| coin_id.to_string());
    }

    /// Resolves a coin reference. `symbol` and `name` are the row's own symbol and name
    /// columns when it has them; otherwise the reference itself is tried as both.
    pub(crate) fn resolve(
        &self,
        reference: &str,
        symbol: Option<&str>,
        name: Option<&str>,
    ) -> Resolution {
        if self.coins.contains_key(reference) {
            return Resolution::Found(reference.to_string());
        }
        let lower = reference.to_lowercase();
        if let Some(id) = self.aliases.get(&lower) {
            return Resolution::Found(id.clone());
        }
        if self.coins.contains_key(&lower) {
            return Resolution::Found(lower);
        }
        if let Some(id) = self.shipped_equivalent(&lower) {
            return Resolution::Found(id);
        }
        let mut ambiguous = false;
        let symbol_key = symbol.unwrap_or(reference).to_lowercase();
        match self.by_symbol.get(&symbol_key).map(Vec::as_slice) {
            Some([only]) => return Resolution::Found(only.clone()),
            Some([_, _, ..]) => ambiguous = true,
            _ => {}
        }
        let name_key = name.unwrap_or(reference).to_lowercase();
        if let Some([only]) = self.by_name.get(&name_key).map(Vec::as_slice) {
            return Resolution::Found(only.clone());
        }
        if ambiguous {
            Resolution::AmbiguousSymbol
        } else {
            Resolution::Unknown
        }
    }

    /// Resolves or creates the coin of a listings row.
    pub(crate) fn resolve_listing(
        &mut self,
        id: &str,
        symbol: &str,
        name: &str,
        cmc_id: Option<i64>,
    ) -> ListingCoin {
        if self.coins.contains_key(id) {
            return ListingCoin::Existing(id.to_string());
        }
        if let Some(coin_id) = self.aliases.get(&id.to_lowercase()) {
            return ListingCoin::Existing(coin_id.clone());
        }
        if let Some(coin_id) = self.shipped_equivalent(&id.to_lowercase()) {
            self.insert_alias(id, &coin_id);
            self.pending_aliases.push((id.to_string(), coin_id.clone()));
            return ListingCoin::Aliased {
                external_id: id.to_string(),
                coin_id,
            };
        }
        let same_symbol = self.by_symbol.get(&symbol.to_lowercase());
        let twin: Vec<&String> = same_symbol
            .into_iter()
            .flatten()
            .filter(|candidate| {
                self.coins
                    .get(candidate.as_str())
                    .is_some_and(|c| c.name.eq_ignore_ascii_case(name))
            })
            .collect();
        if let [coin_id] = twin.as_slice() {
            let coin_id = (*coin_id).clone();
            self.insert_alias(id, &coin_id);
            self.pending_aliases.push((id.to_string(), coin_id.clone()));
            return ListingCoin::Aliased {
                external_id: id.to_string(),
                coin_id,
            };
        }
        let coin = NewCoin {
            id: id.to_string(),
            symbol: symbol.to_string(),
            name: name.to_string(),
            cmc_id,
            inferred: false,
        };
        self.insert_known(id, symbol, name);
        self.pending_coins.push(coin.clone());
        ListingCoin::Created(coin)
    }

    /// A known coin that a shipped alias group puts beside `lower` (a lower-case id).
    fn shipped_equivalent(&self, lower: &str) -> Option<String> {
        let group = SHIPPED_ALIASES.iter().find(|g| g.contains(&lower))?;
        group
            .iter()
            .find(|id| **id != lower && self.coins.contains_key(**id))
            .map(|id| id.to_string())
    }

    /// Creates the coin a history row names by symbol and name when no known coin
    /// matches: its id is the name's slug (with the symbol's when the slug is taken).
    /// Later rows find it by name; a listings file that knows the coin later records
    /// its own id as an alias of this one.
    pub(crate) fn infer(&mut self, symbol: &str, name: &str) -> String {
        let base = match slug(name) {
            s if s.is_empty() => slug(symbol),
            s => s,
        };
        let taken = |index: &CoinIndex, id: &str| {
            index.coins.contains_key(id) || index.aliases.contains_key(id)
        };
        let mut id = base.clone();
        if taken(self, &id) {
            id = format!("{base}-{}", slug(symbol));
        }
        let mut n = 2;
        while taken(self, &id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        self.insert_known(&id, symbol, name);
        self.pending_coins.push(NewCoin {
            id: id.clone(),
            symbol: symbol.to_string(),
            name: name.to_string(),
            cmc_id: None,
            inferred: true,
        });
        id
    }

    /// Every coin and alias as a line, sorted: what resolution depends on.
    pub(crate) fn fingerprint_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .coins
            .iter()
            .map(|(id, c)| format!("c\t{id}\t{}\t{}", c.symbol, c.name))
            .chain(
                self.aliases
                    .iter()
                    .map(|(external, id)| format!("a\t{external}\t{id}")),
            )
            .collect();
        lines.sort_unstable();
        lines
    }

    /// Hands over the coins and aliases the current file added (they are to be written).
    pub(crate) fn take_pending(&mut self) -> (Vec<NewCoin>, Vec<(String, String)>) {
        (
            std::mem::take(&mut self.pending_coins),
            std::mem::take(&mut self.pending_aliases),
        )
    }
}

/// Quote currencies whose prices are USD prices: the dollar and its stablecoins.
pub(crate) const USD_QUOTES: &[&str] = &[
    "USDT", "USDC", "BUSD", "TUSD", "USDP", "FDUSD", "GUSD", "USD", "DAI", "PAX", "UST",
];

/// An exchange pair as exchanges write it: `BTC/USDT`, `BTC-USD`, `BTC_USDT` or
/// `BTCUSDT`, as (base, quote). A `/` always makes a pair; the other forms only with a
/// USD quote (a coin's slug may contain a `-`).
pub(crate) fn split_pair(reference: &str) -> Option<(&str, &str)> {
    if let Some((base, quote)) = reference.split_once('/') {
        return (!base.is_empty() && !quote.is_empty()).then_some((base, quote));
    }
    let upper = reference.to_ascii_uppercase();
    USD_QUOTES.iter().find_map(|quote| {
        let base_len = upper.strip_suffix(quote)?.len();
        let base = reference[..base_len].trim_end_matches(['-', '_']);
        (!base.is_empty() && base.len() <= 10 && base.chars().all(|c| c.is_ascii_alphanumeric()))
            .then(|| (base, &reference[base_len..]))
    })
}

/// Whether a pair's quote currency is the dollar or a USD stablecoin.
pub(crate) fn is_usd_quote(quote: &str) -> bool {
    USD_QUOTES.iter().any(|q| q.eq_ignore_ascii_case(quote))
}

fn push_unique(map: &mut HashMap<String, Vec<String>>, key: String, id: &str) {
    let ids = map.entry(key).or_default();
    if !ids.iter().any(|existing| existing == id) {
        ids.push(id.to_string());
    }
}

fn remove_from(map: &mut HashMap<String, Vec<String>>, key: &str, id: &str) {
    if let Some(ids) = map.get_mut(key) {
        ids.retain(|existing| existing != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> CoinIndex {
        let mut index = CoinIndex::default();
        index.insert_known("bitcoin", "BTC", "Bitcoin");
        index.insert_known("binancecoin", "BNB", "Binance Coin");
        index.insert_known("thorchain", "RUNE", "THORChain");
        index.insert_known("rune", "RUNE", "Rune");
        index
    }

    #[test]
    fn resolution_order_is_id_alias_symbol_name() {
        let mut index = index();
        assert_eq!(
            index.resolve("bitcoin", None, None),
            Resolution::Found("bitcoin".into())
        );
        assert_eq!(
            index.resolve("btc", None, None),
            Resolution::Found("bitcoin".into())
        );
        assert_eq!(
            index.resolve("Bitcoin", Some("BTC"), Some("Bitcoin")),
            Resolution::Found("bitcoin".into())
        );
        index.insert_alias("bnb-slug", "binancecoin");
        assert_eq!(
            index.resolve("BNB-SLUG", None, None),
            Resolution::Found("binancecoin".into())
        );
        assert_eq!(index.resolve("nothing", None, None), Resolution::Unknown);
    }

    #[test]
    fn shared_symbols_are_ambiguous_unless_the_name_decides() {
        let index = index();
        assert_eq!(
            index.resolve("rune-x", Some("RUNE"), None),
            Resolution::AmbiguousSymbol
        );
        assert_eq!(
            index.resolve("x", Some("RUNE"), Some("thorchain")),
            Resolution::Found("thorchain".into())
        );
    }

    #[test]
    fn a_coin_named_by_symbol_and_name_is_inferred_once_under_its_slug() {
        let mut index = index();
        assert_eq!(
            index.resolve("Solana", Some("SOL"), None),
            Resolution::Unknown
        );
        assert_eq!(index.infer("SOL", "Solana"), "solana");
        assert_eq!(
            index.resolve("Solana", Some("SOL"), None),
            Resolution::Found("solana".into())
        );
        // A taken slug gets the symbol's.
        assert_eq!(index.infer("BTC2", "Bitcoin"), "bitcoin-btc2");
        let (coins, _) = index.take_pending();
        assert!(coins.iter().all(|c| c.inferred));
        assert_eq!(slug("Binance Coin"), "binance-coin");
        assert_eq!(slug("  USD//Coin "), "usd-coin");
    }

    #[test]
    fn provider_ids_of_one_coin_resolve_through_the_shipped_aliases() {
        let mut index = index();
        assert_eq!(
            index.resolve("binance-coin", None, None),
            Resolution::Found("binancecoin".into())
        );
        assert_eq!(
            index.resolve_listing("bnb", "BNB", "BNB", Some(1839)),
            ListingCoin::Aliased {
                external_id: "bnb".into(),
                coin_id: "binancecoin".into()
            }
        );
    }

    #[test]
    fn exchange_pairs_split_into_base_and_quote() {
        assert_eq!(split_pair("BTC/USDT"), Some(("BTC", "USDT")));
        assert_eq!(split_pair("ETH/BTC"), Some(("ETH", "BTC")));
        assert_eq!(split_pair("BTCUSDT"), Some(("BTC", "USDT")));
        assert_eq!(split_pair("btc-usd"), Some(("btc", "usd")));
        assert_eq!(split_pair("binance-coin"), None);
        assert_eq!(split_pair("bitcoin"), None);
        assert!(is_usd_quote("busd") && !is_usd_quote("BTC"));
    }

    #[test]
    fn listing_slugs_matching_symbol_and_name_become_aliases_not_twins() {
        let mut index = index();
        let got = index.resolve_listing("binance-coin", "BNB", "Binance Coin", Some(1839));
        assert_eq!(
            got,
            ListingCoin::Aliased {
                external_id: "binance-coin".into(),
                coin_id: "binancecoin".into()
            }
        );
        assert!(matches!(
            index.resolve_listing("newcoin", "NEW", "New", None),
            ListingCoin::Created(_)
        ));
        assert_eq!(
            index.resolve("newcoin", None, None),
            Resolution::Found("newcoin".into())
        );
        let (coins, aliases) = index.take_pending();
        assert_eq!(coins.len(), 1);
        assert_eq!(
            aliases,
            vec![("binance-coin".to_string(), "binancecoin".to_string())]
        );
    }
}
