//! PyTorch `.pth` files (torch.save's zip format): `<prefix>/data.pkl` (the state dict pickle)
//! plus one stored, uncompressed entry `<prefix>/data/<key>` per storage. The file is mmapped and
//! each tensor becomes a view into its storage entry, so nothing is read until it is written.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::Arc;

use llama_core::{Error, Result};
use memmap2::Mmap;

use crate::pickle::load_state_dict;
use crate::tensor::{Data, SrcTensor};

pub fn mmap_file(path: &Path) -> Result<Arc<Mmap>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the checkpoint is opened read-only; like every mmap reader we assume no other process
    // truncates it while we convert (a truncation would fault, not corrupt memory safety of output).
    let m = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
    Ok(Arc::new(m))
}

/// Loads the tensor index of one `.pth` file (no tensor data is read).
pub fn load_pth(path: &Path) -> Result<Vec<SrcTensor>> {
    let mmap = mmap_file(path)?;
    let bad = |msg: String| Error::format(path, msg);
    let mut zip = zip::ZipArchive::new(Cursor::new(&mmap[..]))
        .map_err(|e| bad(format!("not a readable torch zip checkpoint (truncated or not a .pth?): {e}")))?;

    // Entry name → (data start, size) for stored entries; the pickle's name.
    let mut entries: HashMap<String, (u64, u64, bool)> = HashMap::new();
    let mut pkl = None;
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).map_err(|e| bad(format!("zip entry {i}: {e}")))?;
        let name = f.name().to_string();
        let stored = f.compression() == zip::CompressionMethod::Stored;
        entries.insert(name.clone(), (f.data_start(), f.compressed_size(), stored));
        if name.ends_with("data.pkl") && name.matches('/').count() <= 1 {
            pkl = Some(name);
        }
    }
    let pkl = pkl.ok_or_else(|| bad("no data.pkl entry: not a torch.save checkpoint".into()))?;
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    let mut pickle = Vec::new(); // [size of data.pkl]
    zip.by_name(&pkl)
        .map_err(|e| bad(format!("{pkl}: {e}")))?
        .read_to_end(&mut pickle)
        .map_err(|e| bad(format!("{pkl}: {e}")))?;
    let dict = load_state_dict(&pickle, &pkl).map_err(bad)?;

    let mut out = Vec::with_capacity(dict.len());
    for (name, t) in dict {
        let entry = format!("{prefix}data/{}", t.storage_key);
        let &(start, size, stored) =
            entries.get(&entry).ok_or_else(|| bad(format!("tensor '{name}': storage entry '{entry}' is missing")))?;
        if !stored {
            return Err(bad(format!(
                "tensor '{name}': storage '{entry}' is compressed (torch stores them uncompressed)"
            )));
        }
        let es = t.dtype.size() as u64;
        let end = start.checked_add(size).filter(|&e| e <= mmap.len() as u64);
        if end.is_none() {
            return Err(bad(format!(
                "tensor '{name}': storage '{entry}' extends past the end of the file (truncated?)"
            )));
        }
        let avail = size / es;
        if t.storage_numel > avail {
            return Err(bad(format!(
                "tensor '{name}': storage claims {} elements but entry '{entry}' holds {avail}",
                t.storage_numel
            )));
        }
        SrcTensor::check_view_bounds(&t.shape, t.offset, &t.stride, t.storage_numel)
            .map_err(|m| bad(format!("tensor '{name}': {m}")))?;
        out.push(SrcTensor {
            name,
            file: path.to_path_buf(),
            dtype: t.dtype,
            shape: t.shape,
            data: Data::View { mmap: mmap.clone(), base: start as usize, offset: t.offset, stride: t.stride },
        });
    }
    Ok(out)
}
