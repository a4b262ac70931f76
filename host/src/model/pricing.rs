//! List prices and the list cost of a session's usage, for budgets.
//!
//! Costs are exact integers of picodollars (10⁻¹² USD): a list price of
//! `$x` per million tokens is `x·10⁶` picodollars per token, so a price with
//! up to six decimals times any token count adds up without rounding. A cost
//! is shown in cents rounded up, so a budget never reads as less spent than
//! it is.
//!
//! Bridle ships no price list: models are served through the operator's own
//! endpoints and gateways, at prices only the operator knows. A model is
//! "budgetable" when the operator's config prices it (`[pricing."<model>"]`).

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::sessions::{Budget, Money};

/// `[pricing."<model id>"]`: a model's list prices, in USD per million tokens.
/// The cache prices default to Anthropic's published multiples of the input
/// price (reads 0.1×, 5-minute writes 1.25×, 1-hour writes 2×).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input: Decimal,
    pub output: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_5m: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<Decimal>,
}

/// A model's prices in picodollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
}

impl Price {
    /// Checks a configured price: non-negative, at most six decimals (one
    /// millionth of a dollar per million tokens), below $10⁶ per million.
    pub fn from_config(p: &ModelPrice) -> Result<Price, String> {
        let pico = |field: &str, d: Decimal| -> Result<u64, String> {
            let scaled = d * Decimal::from(1_000_000u32);
            match (d.is_sign_negative(), scaled.fract().is_zero(), scaled.to_u64()) {
                (false, true, Some(v)) if v < 1_000_000_000_000 => Ok(v),
                (true, ..) => Err(format!("{field}: a price cannot be negative, got {d}")),
                (_, false, _) => Err(format!("{field}: at most 6 decimal places (USD per million tokens), got {d}")),
                _ => Err(format!("{field}: must be below 1000000 USD per million tokens, got {d}")),
            }
        };
        let input = pico("input", p.input)?;
        let default = |num: u64, den: u64| input * num / den;
        Ok(Price {
            input,
            output: pico("output", p.output)?,
            cache_read: p.cache_read.map(|d| pico("cache_read", d)).transpose()?.unwrap_or(default(1, 10)),
            cache_write_5m: p.cache_write_5m.map(|d| pico("cache_write_5m", d)).transpose()?.unwrap_or(default(5, 4)),
            cache_write_1h: p.cache_write_1h.map(|d| pico("cache_write_1h", d)).transpose()?.unwrap_or(default(2, 1)),
        })
    }
}

/// An amount of money in picodollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cost(pub u128);

const PICO_PER_CENT: u128 = 10_000_000_000;

impl Cost {
    pub fn from_cents(cents: u128) -> Cost {
        Cost(cents.saturating_mul(PICO_PER_CENT))
    }

    /// Whole cents, rounded up.
    pub fn cents_ceil(self) -> u128 {
        self.0.div_ceil(PICO_PER_CENT)
    }

    /// As the API's `BetaMonetaryAmount` (minor units, USD).
    pub fn money(self) -> Money {
        Money { amount: self.cents_ceil().to_string(), currency: "USD".into() }
    }
}

/// The list cost of a session's `usage` (the API's token counts) at `price`.
pub fn list_cost(usage: &Map<String, Value>, price: &Price) -> Cost {
    let n = |v: Option<&Value>| u128::from(v.and_then(Value::as_u64).unwrap_or(0));
    let cache = usage.get("cache_creation").and_then(Value::as_object);
    let cache_n = |key: &str| n(cache.and_then(|c| c.get(key)));
    let total = n(usage.get("input_tokens")) * u128::from(price.input)
        + n(usage.get("output_tokens")) * u128::from(price.output)
        + n(usage.get("cache_read_input_tokens")) * u128::from(price.cache_read)
        + cache_n("ephemeral_5m_input_tokens") * u128::from(price.cache_write_5m)
        + cache_n("ephemeral_1h_input_tokens") * u128::from(price.cache_write_1h);
    Cost(total)
}

/// A budget's ceiling. The amount was checked to be decimal digits; one too
/// large for any real spend saturates.
pub fn budget_limit(b: &Budget) -> Cost {
    let Budget::Limit { max_list_cost } = b;
    Cost::from_cents(max_list_cost.amount.parse::<u128>().unwrap_or(u128::MAX))
}

/// The model id of an agent snapshot (`model` is a config object; a bare
/// string is accepted too).
pub fn model_id(agent: &Value) -> Option<&str> {
    let m = agent.get("model")?;
    m.as_str().or_else(|| m.get("id").and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr;

    fn price(input: &str, output: &str) -> ModelPrice {
        ModelPrice {
            input: Decimal::from_str(input).unwrap(),
            output: Decimal::from_str(output).unwrap(),
            cache_read: None,
            cache_write_5m: None,
            cache_write_1h: None,
        }
    }

    /// input, output, cache read, 5-minute write, 1-hour write.
    type Prices = (u64, u64, u64, u64, u64);

    #[test]
    fn configured_prices_become_picodollars_per_token() {
        let cases: &[(&str, &str, Result<Prices, &str>)] = &[
            // input, output → (input, output, cache read, 5m write, 1h write)
            ("3", "15", Ok((3_000_000, 15_000_000, 300_000, 3_750_000, 6_000_000))),
            ("0.25", "1.25", Ok((250_000, 1_250_000, 25_000, 312_500, 500_000))),
            ("0.000001", "0", Ok((1, 0, 0, 1, 2))),
            ("0", "0", Ok((0, 0, 0, 0, 0))),
            ("0.0000001", "1", Err("at most 6 decimal places")),
            ("-1", "1", Err("cannot be negative")),
            ("1", "1000000", Err("below 1000000")),
        ];
        for (input, output, want) in cases {
            let got = Price::from_config(&price(input, output))
                .map(|p| (p.input, p.output, p.cache_read, p.cache_write_5m, p.cache_write_1h));
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(*w, g, "{input}/{output}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{input}/{output}: {g}"),
                (w, g) => panic!("{input}/{output}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn explicit_cache_prices_win_over_the_defaults() {
        let mut p = price("2", "8");
        p.cache_read = Some(Decimal::from_str("0.5").unwrap());
        p.cache_write_1h = Some(Decimal::from_str("0").unwrap());
        let got = Price::from_config(&p).unwrap();
        assert_eq!((got.cache_read, got.cache_write_5m, got.cache_write_1h), (500_000, 2_500_000, 0));
    }

    #[test]
    fn prices_read_from_toml_strings_and_numbers() {
        let p: ModelPrice = toml::from_str("input = \"3\"\noutput = 15.5\ncache_read = 0.3").unwrap();
        let got = Price::from_config(&p).unwrap();
        assert_eq!((got.input, got.output, got.cache_read), (3_000_000, 15_500_000, 300_000));
        let err = toml::from_str::<ModelPrice>("input = 1\noutput = 1\nbatch = 1").unwrap_err();
        assert!(err.to_string().contains("batch"), "{err}");
    }

    #[test]
    fn list_cost_adds_every_token_class() {
        let p = Price::from_config(&price("3", "15")).unwrap();
        let usage = |v: Value| v.as_object().unwrap().clone();
        let cases = [
            (json!({}), 0),
            (json!({"input_tokens": 1_000_000}), 3_000_000_000_000),
            (json!({"output_tokens": 1}), 15_000_000),
            (
                json!({"input_tokens": 10, "output_tokens": 10, "cache_read_input_tokens": 10,
                       "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 10}}),
                10 * (3_000_000 + 15_000_000 + 300_000 + 3_750_000 + 6_000_000),
            ),
            // Fields the API may add, or odd values, count as nothing.
            (json!({"input_tokens": -5, "output_tokens": "7", "server_tool_use": {"web_search_requests": 3}}), 0),
        ];
        for (u, want) in cases {
            assert_eq!(list_cost(&usage(u.clone()), &p), Cost(want), "{u}");
        }
    }

    #[test]
    fn costs_show_as_cents_rounded_up() {
        let cases =
            [(0u128, "0"), (1, "1"), (PICO_PER_CENT, "1"), (PICO_PER_CENT + 1, "2"), (250 * PICO_PER_CENT, "250")];
        for (pico, cents) in cases {
            assert_eq!(Cost(pico).money(), Money { amount: cents.into(), currency: "USD".into() }, "{pico}");
        }
    }

    #[test]
    fn budget_limits_are_cents() {
        let b = |amount: &str| Budget::Limit { max_list_cost: Money { amount: amount.into(), currency: "USD".into() } };
        assert_eq!(budget_limit(&b("2500")), Cost::from_cents(2500));
        assert_eq!(budget_limit(&b("0")), Cost(0));
        assert_eq!(budget_limit(&b(&"9".repeat(60))), Cost(u128::MAX));
    }

    #[test]
    fn model_ids_come_from_config_objects_or_strings() {
        assert_eq!(
            model_id(&json!({"model": {"id": "claude-opus-4-5", "speed": "standard"}})),
            Some("claude-opus-4-5")
        );
        assert_eq!(model_id(&json!({"model": "gpt-5"})), Some("gpt-5"));
        assert_eq!(model_id(&json!({"name": "x"})), None);
    }
}
