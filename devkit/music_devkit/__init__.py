"""Development tools of the music.profiles collection, shared by tests/ and bench/.

    library      generated FLAC libraries (sox audio, full tags, cover art)
    moto         a moto server on a loopback port; moto_fixes, where moto differs from EC2
    aws          runs the AWS playbooks against it
    rotate_world snapshot lineages put straight into moto's backend
    role_docs    each role's README variable table from its argument spec
"""
