//! A `user.message`'s content as the Managed Agents API defines it (a
//! string, or text / image / document blocks), read into types, so each
//! plugin maps blocks to its runtime's input form instead of re-parsing
//! JSON. Blocks a plugin cannot use come back as [`Block::Other`].

use serde::Deserialize;
use serde_json::Value;

/// One content block of a user message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
    },
    #[serde(other)]
    Other,
}

/// Where an image's or document's bytes are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    /// A plain-text document.
    Text {
        data: String,
    },
    #[serde(other)]
    Other,
}

impl Source {
    /// The source as a URL (`data:` for inline bytes), where it is one.
    pub fn url(&self) -> Option<String> {
        match self {
            Source::Url { url } => Some(url.clone()),
            Source::Base64 { media_type, data } => Some(format!("data:{media_type};base64,{data}")),
            Source::Text { .. } | Source::Other => None,
        }
    }
}

/// The blocks of a message's `content`: a string is one text block; a block
/// that does not read (a missing field, an unknown type) is `Other`.
pub fn blocks(content: &Value) -> Vec<Block> {
    match content {
        Value::String(s) => vec![Block::Text { text: s.clone() }],
        Value::Array(items) => {
            items.iter().map(|b| serde_json::from_value(b.clone()).unwrap_or(Block::Other)).collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_reads_into_blocks() {
        assert_eq!(blocks(&json!("hi")), [Block::Text { text: "hi".into() }]);
        let got = blocks(&json!([
            {"type": "text", "text": "a"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}, "title": "t"},
            {"type": "document", "source": {"type": "file", "file_id": "file_1"}},
            {"type": "text"},
            {"type": "audio", "source": {}},
            7,
        ]));
        assert_eq!(got[0], Block::Text { text: "a".into() });
        let Block::Image { source } = &got[1] else { panic!("{got:?}") };
        assert_eq!(source.url().as_deref(), Some("data:image/png;base64,AAAA"));
        let Block::Image { source } = &got[2] else { panic!("{got:?}") };
        assert_eq!(source.url().as_deref(), Some("https://x/y.png"));
        assert_eq!(got[3], Block::Document { source: Source::Text { data: "doc".into() } });
        assert_eq!(got[4], Block::Document { source: Source::Other });
        assert_eq!(&got[5..], [Block::Other, Block::Other, Block::Other]);
        assert!(blocks(&json!(null)).is_empty());
    }
}
