//! `parse_script` returns (Ok or Err) on any input: random bytes, token soups and
//! mutations of the real scripts in tests/scripts/.

use plugtcp_packetdrill::parse_script;
use proptest::prelude::*;

/// Fragments of real scripts, including the awkward ones (unterminated delimiters,
/// directives, huge numbers, dashed keywords).
const VOCABULARY: &[&str] = &[
    "0",
    "+0",
    "+.1",
    "0.100",
    "*",
    "~",
    "+",
    "-",
    "...",
    "!",
    "=",
    "|",
    ",",
    ":",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "<",
    ">",
    "/",
    ".",
    "S",
    "S.",
    "P.",
    "F.",
    "R",
    "SEW",
    "SEWA",
    "5.",
    "P.6",
    ".6",
    "-1",
    "0x02",
    "0xffffffff",
    "4294967296",
    "99999999999999999999",
    "1:1001(1000)",
    "0:0(0)!",
    "...(10)",
    "ack",
    "win",
    "urg",
    "mss",
    "1460",
    "nop",
    "eol",
    "wscale",
    "sackOK",
    "sack",
    "TS",
    "val",
    "ecr",
    "FO",
    "FOEXP",
    "EXP-FO",
    "md5",
    "valid",
    "AccECN0",
    "EE0B",
    "ECEB",
    "ECN",
    "e1b",
    "exp-tarr",
    "opt",
    "icmp",
    "unreachable",
    "frag_needed",
    "mtu",
    "id",
    "sctp",
    "udp",
    "gre",
    "ipv4",
    "[ect0]",
    "(tos 0x10)",
    "(class 0x28)",
    "(hlim 3)",
    "dscp",
    "AF41",
    "flowlabel",
    "ecn",
    "ce",
    "noecn",
    "socket",
    "read",
    "connect",
    "SOL_SOCKET",
    "htons",
    "htonl",
    "inet_addr",
    "\"192.0.2.1\"",
    "\"abc\"",
    "\"",
    "`",
    "`ls`",
    "%{",
    "}%",
    "%{ x }%",
    "/*",
    "*/",
    "//",
    "#ifdef",
    "#ifndef",
    "#else",
    "#endif",
    "FreeBSD",
    "--tolerance_usecs=10000",
    "--define=X=1",
    "--",
    "EINPROGRESS",
    "(Operation now in progress)",
    "msg_iov(1)=",
    "{fd=3, events=POLLIN}",
    "NULL",
    "\n",
    "\t",
    "é",
    "\u{0}",
    "\r\n",
];

fn scripts() -> Vec<String> {
    let dir = format!("{}/tests/scripts", env!("CARGO_MANIFEST_DIR"));
    let mut texts: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "pkt").then(|| std::fs::read_to_string(path).ok())?
        })
        .collect();
    texts.sort();
    texts
}

fn parse_does_not_panic(text: &str) {
    let _ = parse_script("fuzz.pkt", text, &[]);
    let _ = parse_script("fuzz.pkt", text, &["FreeBSD".into(), "X=\"v\"".into()]);
}

/// One edit of a script: byte position (scaled to the text), kind, payload.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, fragment: usize },
    DuplicateLine { line: usize },
    Truncate { at: usize },
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), any::<usize>()).prop_map(|(at, fragment)| Edit::Insert { at, fragment }),
        any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
    ]
}

/// The nearest char boundary at or below `at`.
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, edit: &Edit) -> String {
    let len = text.len().max(1);
    match *edit {
        Edit::Delete { at, len: n } => {
            let start = boundary(text, at % len);
            let end = boundary(text, start + n);
            format!("{}{}", &text[..start], &text[end..])
        }
        Edit::Insert { at, fragment } => {
            let at = boundary(text, at % len);
            let fragment = VOCABULARY[fragment % VOCABULARY.len()];
            format!("{}{}{}", &text[..at], fragment, &text[at..])
        }
        Edit::DuplicateLine { line } => {
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                return text.to_string();
            }
            let index = line % lines.len();
            let mut out: Vec<&str> = lines.clone();
            out.insert(index, lines[index]);
            out.join("\n")
        }
        Edit::Truncate { at } => text[..boundary(text, at % len)].to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_strings(text in any::<String>()) {
        parse_does_not_panic(&text);
    }

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        parse_does_not_panic(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soup(
        picks in proptest::collection::vec((any::<usize>(), 0usize..3), 0..80)
    ) {
        let mut text = String::new();
        for (pick, separator) in picks {
            text.push_str(VOCABULARY[pick % VOCABULARY.len()]);
            text.push_str([" ", "", "\n"][separator]);
        }
        parse_does_not_panic(&text);
    }

    #[test]
    fn mutated_real_scripts(
        script in any::<usize>(),
        edits in proptest::collection::vec(edit_strategy(), 1..8)
    ) {
        let texts = scripts();
        let mut text = texts[script % texts.len()].clone();
        for edit in &edits {
            text = apply(&text, edit);
        }
        parse_does_not_panic(&text);
    }
}
