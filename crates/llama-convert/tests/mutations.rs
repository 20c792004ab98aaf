//! Robustness: thousands of mutated copies (byte flips, truncations, insertions) of a real
//! `data.pkl` and a real safetensors header must each give Ok or a clean Err — never a panic,
//! a hang or an out-of-bounds read.

mod common;

use std::io::Read;

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            0 => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            1 => {
                let n = rng.below(b.len());
                b.truncate(n);
            }
            2 => {
                let i = rng.below(b.len() + 1);
                b.insert(i, rng.next() as u8);
            }
            _ => {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b.remove(i);
                }
            }
        }
        if b.is_empty() {
            break;
        }
    }
    b
}

#[test]
fn mutated_pickles_never_panic() {
    let Some(fx) = common::fixtures() else { return };
    let f = std::fs::File::open(fx.join("meta-llama1-mp2/tiny/consolidated.01.pth")).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    let mut pkl = Vec::new();
    z.by_name("consolidated.01/data.pkl").unwrap().read_to_end(&mut pkl).unwrap();
    assert_eq!(llama_convert::pickle::load_state_dict(&pkl, "x").unwrap().len(), 22);
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..20_000 {
        match llama_convert::pickle::load_state_dict(&mutate(&mut rng, &pkl), "x") {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    eprintln!("pickle mutations: {ok} ok, {err} errors");
    assert!(err > 0);
}

#[test]
fn mutated_safetensors_headers_never_panic() {
    let Some(fx) = common::fixtures() else { return };
    let full = std::fs::read(fx.join("hf-llama2-gqa-sharded/model-00003-of-00003.safetensors")).unwrap();
    let n = u64::from_le_bytes(full[..8].try_into().unwrap()) as usize;
    let (head, data) = full.split_at(8 + n);
    let path = std::env::temp_dir().join(format!("llama-convert-mut-{}.safetensors", std::process::id()));
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..1_000 {
        let mut b = mutate(&mut rng, head);
        b.extend_from_slice(data);
        std::fs::write(&path, &b).unwrap();
        match llama_convert::safetensors::load_safetensors(&path) {
            Ok(ts) => {
                ok += 1;
                for t in ts {
                    assert_eq!(t.read().unwrap().len() as u64, t.n_elements() * t.dtype.size() as u64);
                }
            }
            Err(_) => err += 1,
        }
    }
    let _ = std::fs::remove_file(&path);
    eprintln!("safetensors mutations: {ok} ok, {err} errors");
    assert!(err > 0);
}
