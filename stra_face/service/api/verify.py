"""1:1 verification: do two photos show the same person?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from stra_face.service.analysis import analyze_images
from stra_face.service.api.decision import decision, far_at
from stra_face.service.api.deps import State, image_body, read_images
from stra_face.service.api.faces import ERRORS, Flip, Options, counted, detected
from stra_face.service.errors import APIError
from stra_face.service.schemas import Decision, DetectedFace, VerifyPair, VerifyResponse
from stra_face.vision.pipeline import low_quality_note

router = APIRouter(prefix="/v1", tags=["verification"])


@router.post(
    "/verify",
    response_model=VerifyResponse,
    responses=ERRORS,
    openapi_extra=image_body("image1", "image2"),
    summary="compare every face of image1 with every face of image2; the best pair decides",
)
async def verify(
    request: Request, state: State, options: Options, chosen: Annotated[Decision, Depends(decision)], flip: Flip = None
) -> VerifyResponse:
    flip = state.settings.flip_embeddings if flip is None else flip
    images = await read_images(request, ("image1", "image2"), state.settings.max_image_bytes)
    first, second = await analyze_images(state, [images["image1"], images["image2"]], options, embed=True, flip=flip)
    for field, result in (("image1", first), ("image2", second)):
        if not result.detections:
            raise APIError(422, "no_face", f"no face found in {field}{low_quality_note(result)}")
    similarities = first.embeddings @ second.embeddings.T
    pairs = [
        VerifyPair(
            face1=i,
            face2=j,
            similarity=float(similarities[i, j]),
            far_at_score=far_at(state, float(similarities[i, j])),
            verified=bool(similarities[i, j] >= chosen.threshold),
        )
        for i in range(similarities.shape[0])
        for j in range(similarities.shape[1])
    ]
    pairs.sort(key=lambda pair: pair.similarity, reverse=True)
    best = pairs[0]
    return VerifyResponse(
        verified=best.verified,
        similarity=best.similarity,
        decision=chosen,
        best=best,
        pairs=pairs,
        faces1=[DetectedFace(**detected(d, q)) for d, q in zip(first.detections, first.qualities)],
        faces2=[DetectedFace(**detected(d, q)) for d, q in zip(second.detections, second.qualities)],
        faces1_found=first.faces_found,
        faces2_found=second.faces_found,
        truncated=any(counted(result)["truncated"] for result in (first, second)),
        model_sha256=state.embedder.sha256,
    )
