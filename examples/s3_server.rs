//! An S3-compatible server on loopback that serves a folder (each subfolder a
//! bucket, each file an object), for the S3 row of `benches/run.sh`: s3s over
//! s3s-fs (dev-dependencies), anonymous requests (read with `--no-sign-request`).
//!
//! ```sh
//! cargo run --release --example s3_server -- ROOT
//! ```
//!
//! Prints the address it listens on (`http://127.0.0.1:PORT`) as one line on
//! standard output, then serves until killed.

use std::path::PathBuf;
use std::process::ExitCode;

use s3s::dto::{
    ETag, GetObjectInput, GetObjectOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput,
    HeadObjectOutput, ListObjectsV2Input, ListObjectsV2Output,
};
use s3s::{S3, S3Request, S3Response, S3Result};

/// s3s-fs, with the ETag S3 always gives in a listing (s3s-fs gives none):
/// here from the file's size and modification time.
struct Listed {
    inner: s3s_fs::FileSystem,
    root: PathBuf,
}

#[async_trait::async_trait]
impl S3 for Listed {
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let bucket = self.root.join(&req.input.bucket);
        let mut response = self.inner.list_objects_v2(req).await?;
        for object in response.output.contents.iter_mut().flatten() {
            let key = object.key.clone().unwrap_or_default();
            let Ok(meta) = std::fs::metadata(bucket.join(&key)) else {
                continue;
            };
            let modified = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            object.e_tag = Some(ETag::Strong(format!("{:x}-{modified:x}", meta.len())));
        }
        Ok(response)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.inner.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.inner.head_object(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }
}

fn main() -> ExitCode {
    let Some(root) = std::env::args().nth(1) else {
        eprintln!("usage: s3_server ROOT");
        return ExitCode::from(2);
    };
    let fs = match s3s_fs::FileSystem::new(&root) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("s3_server: {root}: {e:?}");
            return ExitCode::from(2);
        }
    };
    let listed = Listed {
        inner: fs,
        root: PathBuf::from(&root),
    };
    let service = s3s::service::S3ServiceBuilder::new(listed).build();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        println!("http://{}", listener.local_addr().expect("an address"));
        let http =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let connection = http
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    })
}
