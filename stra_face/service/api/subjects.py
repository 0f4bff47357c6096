"""The gallery: subjects, their enrolled faces, and 1:N identification."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from stra_face.gallery import Subject, SubjectFace
from stra_face.service.analysis import analyze_image
from stra_face.service.api.decision import Threshold, far_at, open_set_decision
from stra_face.service.api.deps import State, admitted, image_body, read_images
from stra_face.service.api.faces import ERRORS, Flip, Options, counted, detected
from stra_face.service.errors import APIError
from stra_face.service.limits import check_metadata
from stra_face.service.schemas import (
    DetectedFace,
    EnrollResponse,
    IdentifiedFace,
    IdentifyMatch,
    IdentifyResponse,
    SubjectCreate,
    SubjectFaceOut,
    SubjectList,
    SubjectOut,
)
from stra_face.vision.identify import assign_subjects
from stra_face.vision.pipeline import low_quality_note

router = APIRouter(prefix="/v1", tags=["gallery"])
SubjectId = Annotated[str, Path(min_length=1, max_length=128)]
FaceId = Annotated[str, Path(min_length=1, max_length=128)]


def face_out(face: SubjectFace, current_sha256: str) -> SubjectFaceOut:
    return SubjectFaceOut(
        id=face.id,
        model_sha256=face.model_sha256,
        created_at=face.created_at,
        has_image=face.has_image,
        current_model=face.model_sha256 == current_sha256,
    )


def subject_out(subject: Subject, current_sha256: str) -> SubjectOut:
    return SubjectOut(
        id=subject.id,
        name=subject.name,
        metadata=subject.metadata,
        created_at=subject.created_at,
        faces=[face_out(f, current_sha256) for f in subject.faces],
    )


@router.post("/subjects", response_model=SubjectOut, status_code=201, responses=ERRORS | {409: ERRORS[422]})
async def create_subject(body: SubjectCreate, state: State) -> SubjectOut:
    try:
        check_metadata(body.metadata, state.settings.max_metadata_bytes, state.settings.max_metadata_depth)
    except ValueError as error:
        raise APIError(422, "validation_error", str(error)) from None
    subject_id = body.id or uuid.uuid4().hex
    subject = await run_in_threadpool(state.gallery.create_subject, subject_id, body.name, body.metadata)
    return subject_out(subject, state.embedder.sha256)


@router.get("/subjects", response_model=SubjectList, responses=ERRORS)
async def list_subjects(
    state: State,
    limit: Annotated[int, Query(ge=1, le=100, description="page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="subjects to skip (oldest first)")] = 0,
) -> SubjectList:
    subjects, total = await run_in_threadpool(state.gallery.list_subjects, limit, offset)
    enrolments = await run_in_threadpool(state.enrolments)
    return SubjectList(
        total=total, subjects=[subject_out(s, state.embedder.sha256) for s in subjects], enrolments=enrolments
    )


@router.get("/subjects/{subject_id}", response_model=SubjectOut, responses=ERRORS | {404: ERRORS[422]})
async def get_subject(subject_id: SubjectId, state: State) -> SubjectOut:
    return subject_out(await run_in_threadpool(state.gallery.get_subject, subject_id), state.embedder.sha256)


@router.delete("/subjects/{subject_id}", status_code=204, responses=ERRORS | {404: ERRORS[422]})
async def delete_subject(subject_id: SubjectId, state: State) -> Response:
    await run_in_threadpool(state.gallery.delete_subject, subject_id)
    return Response(status_code=204)


@router.post(
    "/subjects/{subject_id}/faces",
    response_model=EnrollResponse,
    status_code=201,
    openapi_extra=image_body("image"),
    dependencies=[Depends(admitted)],
    responses=ERRORS | {404: ERRORS[422]},
    summary="enroll the face of an image (exactly one face, or the largest with select=largest)",
)
async def enroll(
    subject_id: SubjectId,
    request: Request,
    state: State,
    options: Options,
    flip: Flip = None,
    select: Annotated[
        str,
        Query(
            pattern="^(single|largest)$", description="single: the image must show one face; largest: take the largest"
        ),
    ] = "single",
    store_image: Annotated[
        bool | None, Query(description="keep the uploaded image in the gallery (server default when absent)")
    ] = None,
) -> EnrollResponse:
    await run_in_threadpool(state.gallery.get_subject, subject_id)  # 404 before any model work
    data = (await read_images(request, ("image",), state.settings.max_image_bytes))["image"]
    flip = state.settings.flip_embeddings if flip is None else flip
    result = await analyze_image(state, data, options, embed=True, flip=flip)
    if not result.detections:
        raise APIError(422, "no_face", f"no face found in the image{low_quality_note(result)}")
    if len(result.detections) > 1 and select == "single":
        raise APIError(
            422, "multiple_faces", f"{result.faces_found} faces found; send a photo of one face or pass select=largest"
        )
    keep_image = state.settings.store_images if store_image is None else store_image
    face = await run_in_threadpool(
        state.gallery.add_face,
        subject_id,
        uuid.uuid4().hex,
        result.embeddings[0],
        state.embedder.sha256,
        data if keep_image else None,
    )
    return EnrollResponse(
        subject_id=subject_id,
        face=face_out(face, state.embedder.sha256),
        detection=DetectedFace(**detected(result.detections[0], result.qualities[0])),
    )


@router.delete("/subjects/{subject_id}/faces/{face_id}", status_code=204, responses=ERRORS | {404: ERRORS[422]})
async def delete_face(subject_id: SubjectId, face_id: FaceId, state: State) -> Response:
    await run_in_threadpool(state.gallery.delete_face, subject_id, face_id)
    return Response(status_code=204)


@router.post(
    "/identify",
    response_model=IdentifyResponse,
    responses=ERRORS,
    openapi_extra=image_body("image"),
    dependencies=[Depends(admitted)],
    summary="who is in the image: per face, an enrolled subject or unknown (open set), and the top-k candidates",
)
async def identify(
    request: Request,
    state: State,
    options: Options,
    flip: Flip = None,
    top_k: Annotated[int, Query(ge=1, le=100)] = 5,
    fpir: Annotated[
        float | None,
        Query(
            gt=0,
            lt=1,
            description=(
                "false-positive identification rate: how often someone not enrolled may be matched to somebody "
                "(server default when absent); the threshold follows the gallery's size"
            ),
        ),
    ] = None,
    threshold: Threshold = None,
) -> IdentifyResponse:
    gallery_faces = (await run_in_threadpool(state.enrolments))["current_model"]
    chosen = open_set_decision(state, fpir, threshold, gallery_faces)
    data = (await read_images(request, ("image",), state.settings.max_image_bytes))["image"]
    flip = state.settings.flip_embeddings if flip is None else flip
    result = await analyze_image(state, data, options, embed=True, flip=flip)
    if not result.detections:
        raise APIError(422, "no_face", f"no face found in the image{low_quality_note(result)}")
    candidates = [
        await run_in_threadpool(state.gallery.search, embedding, state.embedder.sha256, top_k)
        for embedding in result.embeddings
    ]
    faces = [
        IdentifiedFace(
            **detected(detection, quality),
            subject_id=subject,
            unknown=subject is None,
            matches=[
                IdentifyMatch(
                    subject_id=m.subject_id,
                    name=m.name,
                    face_id=m.face_id,
                    similarity=m.similarity,
                    far_at_score=far_at(state, m.similarity),
                    accepted=m.similarity >= chosen.threshold,
                )
                for m in matches
            ],
        )
        for detection, quality, matches, subject in zip(
            result.detections, result.qualities, candidates, assign_subjects(candidates, chosen.threshold)
        )
    ]
    return IdentifyResponse(**counted(result), decision=chosen, model_sha256=state.embedder.sha256, faces=faces)
